using System.Collections.Concurrent;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Outpost.Core.Metrics;
using Outpost.Core.Store;
using Outpost.Server.Hosting;

namespace Outpost.Server.Monitoring;

/// <summary>
/// The server's side of log shipping: counts what each node sent and what its quota dropped
/// (for /metrics and the node's status), and prunes lines older than the retention.
/// </summary>
public sealed partial class LogArchive(IControlPlaneStore store, Leadership leadership, ServerOptions options, ILogger<LogArchive> logger) : BackgroundService, IMetricsSource
{
    private readonly ConcurrentDictionary<string, Counts> _nodes = new(StringComparer.Ordinal);

    private sealed class Counts
    {
        public long Stored;
        public long Duplicates;
        public long Dropped;
    }

    /// <summary>A batch from a node was stored; <paramref name="droppedTotal"/> is the node's own count of lines its quota discarded.</summary>
    public void Record(string node, IngestResult result, long droppedTotal)
    {
        ArgumentNullException.ThrowIfNull(result);
        var counts = _nodes.GetOrAdd(node, _ => new Counts());
        Interlocked.Add(ref counts.Stored, result.Stored);
        Interlocked.Add(ref counts.Duplicates, result.Duplicates);
        Interlocked.Exchange(ref counts.Dropped, droppedTotal);
    }

    public void Forget(string node) => _nodes.TryRemove(node, out _);

    public Task WriteAsync(PrometheusText text, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(text);
        var rows = _nodes.ToArray().OrderBy(p => p.Key, StringComparer.Ordinal).ToList(); // a snapshot: sorting the dictionary itself races its writers (ICollection.CopyTo)
        text.Counter("outpost_logs_received_total", "Log lines stored from each node since the server started (repeats of lines already stored are not counted).");
        foreach (var (node, counts) in rows)
        {
            text.Sample("outpost_logs_received_total", Interlocked.Read(ref counts.Stored), ("node", node));
        }

        text.Counter("outpost_logs_duplicates_total", "Log lines a node sent again (after a cut) that were already stored.");
        foreach (var (node, counts) in rows)
        {
            text.Sample("outpost_logs_duplicates_total", Interlocked.Read(ref counts.Duplicates), ("node", node));
        }

        text.Counter("outpost_logs_dropped_total", "Log lines a node's log quota discarded before they could be shipped, as the node last reported.");
        foreach (var (node, counts) in rows)
        {
            text.Sample("outpost_logs_dropped_total", Interlocked.Read(ref counts.Dropped), ("node", node));
        }

        return Task.CompletedTask;
    }

    /// <summary>Retention runs on the leading replica only.</summary>
    protected override Task ExecuteAsync(CancellationToken stoppingToken) => leadership.RunWhileLeaderAsync(PruneAsync, stoppingToken);

    private async Task PruneAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(TimeSpan.FromMinutes(10), options.TimeProvider);
        do
        {
            try
            {
                await store.PruneLogsAsync(options.TimeProvider.GetUtcNow() - options.LogRetention, stoppingToken);
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                LogPruneFailed(logger, ex.Message);
            }
        }
        while (await timer.WaitForNextTickAsync(stoppingToken));
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Could not prune old logs: {Error}")]
    private static partial void LogPruneFailed(ILogger logger, string error);
}
