using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Outpost.Core.Metrics;
using Outpost.Core.Store;
using Outpost.Protocol;
using Outpost.Server.Hosting;

namespace Outpost.Server.Monitoring;

/// <summary>
/// Adds up what the agents report in their heartbeats: app request deltas per app, revision,
/// node and minute, and each node's resource use. The open minutes live in memory and are
/// written to the store every few seconds (a minute is replaced whole, so writing it again is
/// harmless); minutes older than the retention are pruned. Totals since the server started
/// feed /metrics.
/// </summary>
public sealed partial class MetricsRecorder(IControlPlaneStore store, ServerOptions options, ILogger<MetricsRecorder> logger) : BackgroundService
{
    private static readonly TimeSpan FlushInterval = TimeSpan.FromSeconds(5);
    private readonly Lock _lock = new();
    private readonly Dictionary<(string App, long Revision, string Node, long Minute), RequestStats> _minutes = [];
    private readonly HashSet<(string App, long Revision, string Node, long Minute)> _dirty = [];
    private readonly Dictionary<(string Node, long Minute), NodeUsageSample> _nodeMinutes = [];
    private readonly Dictionary<(string App, long Revision, string Node), RequestStats> _totals = [];
    private readonly Dictionary<string, NodeUsageSample> _usage = new(StringComparer.Ordinal);

    /// <summary>Every delta of the last hour as it arrived, for windows finer than a minute (alert rules).</summary>
    private readonly Queue<(DateTimeOffset At, string App, RequestStats Delta)> _recent = new();
    private static readonly TimeSpan RecentSpan = Core.Resources.AlertRuleSpec.MaxWindow;
    private readonly SemaphoreSlim _flushing = new(1, 1);
    private DateTimeOffset _lastPrune = DateTimeOffset.MinValue;

    private DateTimeOffset Now => options.TimeProvider.GetUtcNow();

    /// <summary>Adds one heartbeat's traffic of one app revision, counted in the minute it arrived.</summary>
    public void Record(string node, AppTraffic traffic)
    {
        ArgumentNullException.ThrowIfNull(traffic);
        var delta = MetricsWire.FromWire(traffic);
        var now = Now;
        var key = (traffic.Name, traffic.Generation, node, MinuteOf(now));
        lock (_lock)
        {
            _recent.Enqueue((now, traffic.Name, delta));
            while (_recent.TryPeek(out var oldest) && oldest.At < now - RecentSpan)
            {
                _recent.Dequeue();
            }

            Get(_minutes, key).Add(delta);
            _dirty.Add(key);
            Get(_totals, (traffic.Name, traffic.Generation, node)).Add(delta);
        }
    }

    /// <summary>Each app's requests (all revisions and nodes) reported since a time, at most an hour back.</summary>
    public IReadOnlyDictionary<string, RequestStats> RecentByApp(DateTimeOffset since)
    {
        var apps = new Dictionary<string, RequestStats>(StringComparer.Ordinal);
        lock (_lock)
        {
            foreach (var (at, app, delta) in _recent)
            {
                if (at >= since)
                {
                    Get(apps, app).Add(delta);
                }
            }
        }

        return apps;
    }

    /// <summary>A node's latest resource use.</summary>
    public void RecordUsage(string node, NodeUsageSample usage)
    {
        lock (_lock)
        {
            _usage[node] = usage;
            _nodeMinutes[(node, MinuteOf(Now))] = usage;
        }
    }

    /// <summary>Each node's latest reported use.</summary>
    public IReadOnlyDictionary<string, NodeUsageSample> Usage
    {
        get
        {
            lock (_lock)
            {
                return new Dictionary<string, NodeUsageSample>(_usage, StringComparer.Ordinal);
            }
        }
    }

    /// <summary>Totals per app, revision and node since the server started (for /metrics).</summary>
    public IReadOnlyList<(string App, long Revision, string Node, RequestStats Stats)> Totals()
    {
        lock (_lock)
        {
            return [.. _totals.Select(p => (p.Key.App, p.Key.Revision, p.Key.Node, p.Value.Clone())).OrderBy(t => t.App, StringComparer.Ordinal).ThenBy(t => t.Revision).ThenBy(t => t.Node, StringComparer.Ordinal)];
        }
    }

    /// <summary>Forgets a node that left the fleet.</summary>
    public void Forget(string node)
    {
        lock (_lock)
        {
            _usage.Remove(node);
            foreach (var key in _totals.Keys.Where(k => k.Node == node).ToList())
            {
                _totals.Remove(key);
            }
        }
    }

    /// <summary>App minutes from <paramref name="since"/> on, including the open minute.</summary>
    public async Task<IReadOnlyList<AppMinute>> AppMinutesAsync(DateTimeOffset since, string? app, CancellationToken cancellationToken)
    {
        await FlushAsync(cancellationToken);
        return await store.ListAppMinutesAsync(since, app, cancellationToken);
    }

    public async Task<IReadOnlyList<NodeMinute>> NodeMinutesAsync(DateTimeOffset since, string? node, CancellationToken cancellationToken)
    {
        await FlushAsync(cancellationToken);
        return await store.ListNodeMinutesAsync(since, node, cancellationToken);
    }

    /// <summary>Writes the minutes that changed; closed minutes then leave memory.</summary>
    public async Task FlushAsync(CancellationToken cancellationToken)
    {
        await _flushing.WaitAsync(cancellationToken);
        try
        {
            List<AppMinute> apps;
            List<NodeMinute> nodes;
            var open = MinuteOf(Now);
            lock (_lock)
            {
                apps = [.. _dirty.Select(k => new AppMinute(k.App, k.Revision, k.Node, DateTimeOffset.FromUnixTimeMilliseconds(k.Minute), _minutes[k].Clone()))];
                _dirty.Clear();
                nodes = [.. _nodeMinutes.Select(p => new NodeMinute(p.Key.Node, DateTimeOffset.FromUnixTimeMilliseconds(p.Key.Minute), p.Value))];
                foreach (var key in _minutes.Keys.Where(k => k.Minute < open).ToList())
                {
                    _minutes.Remove(key); // written above (or before) and closed: late deltas count in the open minute
                }

                _nodeMinutes.Clear();
            }

            try
            {
                await store.SaveMetricMinutesAsync(apps, nodes, cancellationToken);
            }
            catch
            {
                lock (_lock)
                {
                    // Keep them for the next flush.
                    foreach (var m in apps)
                    {
                        var key = (m.App, m.Revision, m.Node, m.Minute.ToUnixTimeMilliseconds());
                        if (!_minutes.ContainsKey(key))
                        {
                            _minutes[key] = m.Stats;
                        }

                        _dirty.Add(key);
                    }

                    foreach (var m in nodes)
                    {
                        _nodeMinutes.TryAdd((m.Node, m.Minute.ToUnixTimeMilliseconds()), m.Usage);
                    }
                }

                throw;
            }
        }
        finally
        {
            _flushing.Release();
        }
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(FlushInterval, options.TimeProvider);
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken))
            {
                try
                {
                    await FlushAsync(stoppingToken);
                    if (Now - _lastPrune > TimeSpan.FromMinutes(10))
                    {
                        await store.PruneMetricsAsync(Now - options.MetricsRetention, stoppingToken);
                        _lastPrune = Now;
                    }
                }
                catch (Exception ex) when (ex is not OperationCanceledException)
                {
                    LogFlushFailed(logger, ex.Message);
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }

        await FlushAsync(CancellationToken.None); // the open minute survives a restart
    }

    /// <summary>A node's usage as status.usage shows it.</summary>
    public static System.Text.Json.Nodes.JsonObject ToJson(NodeUsageSample sample)
    {
        ArgumentNullException.ThrowIfNull(sample);
        return new()
        {
            ["cpuRatio"] = Math.Round(sample.CpuRatio, 4),
            ["cpus"] = sample.CpuCount,
            ["memoryUsedBytes"] = sample.MemoryUsedBytes,
            ["memoryTotalBytes"] = sample.MemoryTotalBytes,
            ["diskUsedBytes"] = sample.DiskUsedBytes,
            ["diskTotalBytes"] = sample.DiskTotalBytes,
            ["dataDirBytes"] = sample.DataDirBytes,
            ["agentRssBytes"] = sample.AgentRssBytes,
            ["agentCpuRatio"] = Math.Round(sample.AgentCpuRatio, 4),
            ["openConnections"] = sample.OpenConnections,
        };
    }

    private static long MinuteOf(DateTimeOffset at) => at.ToUnixTimeMilliseconds() / 60_000 * 60_000;

    private static RequestStats Get<TKey>(Dictionary<TKey, RequestStats> map, TKey key)
        where TKey : notnull
    {
        if (!map.TryGetValue(key, out var stats))
        {
            map[key] = stats = new RequestStats();
        }

        return stats;
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Could not write metrics: {Error}")]
    private static partial void LogFlushFailed(ILogger logger, string error);
}
