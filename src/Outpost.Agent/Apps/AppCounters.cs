using Outpost.Core.Metrics;
using Outpost.Wasm.Wagi;

namespace Outpost.Agent.Apps;

/// <summary>
/// One app revision's request counters on this node, updated lock-free on the request path:
/// totals since it was loaded (for /_outpost/metrics) and the part not yet reported (for the heartbeat).
/// </summary>
public sealed class AppCounters
{
    private long _requests;
    private long _clientErrors;
    private long _serverErrors;
    private long _timeouts;
    private long _latencyMicros;
    private long _memoryPeak;
    private long _memoryPeakSinceReport;
    private readonly long[] _buckets = new long[LatencyBuckets.Count];
    private readonly long[] _limits = new long[Enum.GetValues<AppLimitKind>().Length];
    private readonly RequestStats _reported = new();

    /// <summary>Answers the app produced on this node since the revision was loaded.</summary>
    public long Requests => Interlocked.Read(ref _requests);

    /// <summary>Of those, answered 5xx (app errors, traps, timeouts).</summary>
    public long ServerErrors => Interlocked.Read(ref _serverErrors);

    /// <summary>Counts one answer the app produced.</summary>
    public void Record(int status, double seconds, WagiLimit limit, long memoryBytes)
    {
        Interlocked.Increment(ref _buckets[LatencyBuckets.IndexOf(seconds)]);
        Interlocked.Add(ref _latencyMicros, (long)(seconds * 1_000_000));
        if (limit == WagiLimit.Timeout)
        {
            Interlocked.Increment(ref _timeouts);
        }
        else if (limit != WagiLimit.None)
        {
            RecordLimit(limit switch
            {
                WagiLimit.Memory => AppLimitKind.Memory,
                WagiLimit.Response => AppLimitKind.Response,
                WagiLimit.Volume => AppLimitKind.Volume,
                _ => AppLimitKind.Instances,
            });
        }

        Max(ref _memoryPeak, memoryBytes);
        Max(ref _memoryPeakSinceReport, memoryBytes);
        // Errors first, so a reader never sees more errors than requests.
        if (status >= 500)
        {
            Interlocked.Increment(ref _serverErrors);
        }
        else if (status >= 400)
        {
            Interlocked.Increment(ref _clientErrors);
        }

        Interlocked.Increment(ref _requests);
    }

    /// <summary>A request refused at a limit before the app ran (not an answer of the app, so not in Requests).</summary>
    public void RecordLimit(AppLimitKind kind) => Interlocked.Increment(ref _limits[(int)kind]);

    /// <summary>Totals since the revision was loaded.</summary>
    public RequestStats Totals()
    {
        var stats = new RequestStats
        {
            ServerErrors = ServerErrors,
            ClientErrors = Interlocked.Read(ref _clientErrors),
            Timeouts = Interlocked.Read(ref _timeouts),
            LimitHits = ReadAll(_limits).Sum(),
            LatencySumSeconds = Interlocked.Read(ref _latencyMicros) / 1_000_000.0,
            MemoryPeakBytes = Interlocked.Read(ref _memoryPeak),
        };
        stats.AddBuckets(ReadAll(_buckets));
        stats.Requests = Requests; // last: never fewer requests than counted outcomes
        return stats;
    }

    /// <summary>Limit hits by kind since the revision was loaded.</summary>
    public IEnumerable<(AppLimitKind Kind, long Count)> LimitHits() =>
        Enum.GetValues<AppLimitKind>().Select(k => (k, Interlocked.Read(ref _limits[(int)k])));

    /// <summary>What changed since the previous call (one caller: the heartbeat); empty when nothing did.</summary>
    public RequestStats TakeDelta()
    {
        var now = Totals();
        var delta = new RequestStats
        {
            Requests = now.Requests - _reported.Requests,
            ClientErrors = now.ClientErrors - _reported.ClientErrors,
            ServerErrors = now.ServerErrors - _reported.ServerErrors,
            Timeouts = now.Timeouts - _reported.Timeouts,
            LimitHits = now.LimitHits - _reported.LimitHits,
            LatencySumSeconds = now.LatencySumSeconds - _reported.LatencySumSeconds,
            MemoryPeakBytes = Interlocked.Exchange(ref _memoryPeakSinceReport, 0),
        };
        delta.AddBuckets([.. now.Buckets.Select((c, i) => c - _reported.Buckets[i])]);
        _reported.Requests = now.Requests;
        _reported.ClientErrors = now.ClientErrors;
        _reported.ServerErrors = now.ServerErrors;
        _reported.Timeouts = now.Timeouts;
        _reported.LimitHits = now.LimitHits;
        _reported.LatencySumSeconds = now.LatencySumSeconds;
        now.Buckets.CopyTo(_reported.Buckets, 0);
        return delta;
    }

    private static long[] ReadAll(long[] counters)
    {
        var values = new long[counters.Length];
        for (var i = 0; i < counters.Length; i++)
        {
            values[i] = Interlocked.Read(ref counters[i]);
        }

        return values;
    }

    private static void Max(ref long field, long value)
    {
        var current = Interlocked.Read(ref field);
        while (value > current)
        {
            var seen = Interlocked.CompareExchange(ref field, value, current);
            if (seen == current)
            {
                return;
            }

            current = seen;
        }
    }
}

/// <summary>The limits a request can run into besides the timeout.</summary>
public enum AppLimitKind
{
    /// <summary>limits.memoryMiB.</summary>
    Memory,

    /// <summary>limits.maxResponseBytes.</summary>
    Response,

    /// <summary>limits.maxConcurrency: refused with 503 before running.</summary>
    Concurrency,

    /// <summary>Every instance slot on the node was in use.</summary>
    Instances,

    /// <summary>The request body was over the gateway's limit: refused with 413.</summary>
    Body,

    /// <summary>A write to one of the app's volumes would have passed its sizeLimit (ENOSPC to the guest).</summary>
    Volume,
}
