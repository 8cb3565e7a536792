using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Outpost.Core.Memory;
using Outpost.Server.Sync;

namespace Outpost.Server.Hosting;

/// <summary>
/// Gives memory back once the nodes' streams have settled. Every join and reconnect leaves
/// garbage behind in both heaps: the managed one (handshakes, first snapshots, sessions of the
/// connections that went) promotes it to its oldest generation, which it then keeps committed and
/// fragmented; glibc keeps what OpenSSL's handshakes freed in its arenas (9.2 MB measured after
/// 3,000 nodes joined). A server that then only holds idle streams would keep both for good. When
/// no stream has opened or closed for <see cref="Settle"/>, one blocking, compacting collection
/// that decommits what it can, then one malloc_trim, return them: at 3,000 nodes, RSS 362 → 311 MB
/// (bench/run.sh fleet). The collection pauses managed code once per settle (a storm postpones it
/// until the storm is over); the trim walks the arenas with no pause.
/// </summary>
public sealed partial class HeapTrim(NodeLeases leases, TimeProvider time, ILogger<HeapTrim> logger) : BackgroundService
{
    /// <summary>How long no stream may open or close before trimming.</summary>
    public static readonly TimeSpan Settle = TimeSpan.FromSeconds(30);

    /// <summary>Freed memory worth a line in the log.</summary>
    private const long Noteworthy = 16 * 1024 * 1024;

    private long _trims;

    /// <summary>Trims done since the server started.</summary>
    public long Trims => Interlocked.Read(ref _trims);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        try
        {
            while (true)
            {
                await leases.StreamChanged.WaitAsync(stoppingToken);
                // Settled: a whole Settle with no stream opening or closing (a storm keeps postponing it).
                while (true)
                {
                    var changed = leases.StreamChanged;
                    using var wait = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
                    var quiet = Task.Delay(Settle, time, wait.Token);
                    if (await Task.WhenAny(changed, quiet) == quiet)
                    {
                        await quiet; // surfaces the stop
                        break;
                    }

                    await wait.CancelAsync(); // no timer left behind per stream of a storm
                }

                Trim();
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // Stopping.
        }
    }

    private void Trim()
    {
        var before = Environment.WorkingSet;
        var started = time.GetTimestamp();
        // The managed heap first: the joins' and handshakes' garbage sits in the oldest generation,
        // fragmenting it, and the collector keeps what it committed for them. One blocking,
        // compacting collection that decommits what it can, once per settle.
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Aggressive, blocking: true, compacting: true);
        _ = NativeHeap.Trim(); // false where the C library is not glibc: nothing to trim there
        var freed = before - Environment.WorkingSet;
        var took = time.GetElapsedTime(started);
        Interlocked.Increment(ref _trims);
        if (freed >= Noteworthy)
        {
            LogTrimmed(logger, freed / (1024 * 1024), before / (1024 * 1024), took.TotalMilliseconds);
        }
        else
        {
            LogTrimmedLittle(logger, freed / 1024, took.TotalMilliseconds);
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Node streams settled: compacted the managed heap and trimmed the C heap, {Freed} MB back to the system (RSS was {Before} MB; took {Took:F0} ms)")]
    private static partial void LogTrimmed(ILogger logger, long freed, long before, double took);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Node streams settled: compacted and trimmed, {Freed} KB back (took {Took:F0} ms)")]
    private static partial void LogTrimmedLittle(ILogger logger, long freed, double took);
}
