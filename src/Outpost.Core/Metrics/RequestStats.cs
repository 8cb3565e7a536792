namespace Outpost.Core.Metrics;

/// <summary>
/// What one app revision's requests did over some span: counts by outcome, a latency histogram
/// (counts per <see cref="LatencyBuckets"/> bucket, not cumulative) and its instances' peak memory.
/// Agents ship these as deltas; the server adds them per minute.
/// </summary>
public sealed class RequestStats
{
    public long Requests { get; set; }

    /// <summary>Answered 4xx.</summary>
    public long ClientErrors { get; set; }

    /// <summary>Answered 5xx (app errors, traps, timeouts, limits).</summary>
    public long ServerErrors { get; set; }

    /// <summary>Ran past limits.timeoutMs (answered 504; also counted in ServerErrors).</summary>
    public long Timeouts { get; set; }

    /// <summary>Ran into a limit other than the timeout: memory, response size, concurrency, the node's instance slots, the body size.</summary>
    public long LimitHits { get; set; }

    public double LatencySumSeconds { get; set; }

    public long[] Buckets { get; private set; } = new long[LatencyBuckets.Count];

    /// <summary>The largest linear memory an instance reached.</summary>
    public long MemoryPeakBytes { get; set; }

    public bool IsEmpty => Requests == 0 && LimitHits == 0;

    public void Add(RequestStats other)
    {
        ArgumentNullException.ThrowIfNull(other);
        Requests += other.Requests;
        ClientErrors += other.ClientErrors;
        ServerErrors += other.ServerErrors;
        Timeouts += other.Timeouts;
        LimitHits += other.LimitHits;
        LatencySumSeconds += other.LatencySumSeconds;
        AddBuckets(other.Buckets);
        MemoryPeakBytes = Math.Max(MemoryPeakBytes, other.MemoryPeakBytes);
    }

    /// <summary>Adds per-bucket counts; a shorter list (trailing zeros trimmed on the wire) is fine, a longer one is refused.</summary>
    public void AddBuckets(IReadOnlyList<long> counts)
    {
        ArgumentNullException.ThrowIfNull(counts);
        if (counts.Count > Buckets.Length)
        {
            throw new InvalidDataException($"a latency histogram has {counts.Count} buckets; Outpost uses {Buckets.Length}");
        }

        for (var i = 0; i < counts.Count; i++)
        {
            Buckets[i] += counts[i];
        }
    }

    /// <summary>The bucket counts without trailing zeros (what goes on the wire).</summary>
    public IEnumerable<long> TrimmedBuckets()
    {
        var last = Array.FindLastIndex(Buckets, c => c != 0);
        return Buckets.Take(last + 1);
    }

    public double? Quantile(double q) => LatencyBuckets.Quantile(Buckets, q);

    public RequestStats Clone()
    {
        var copy = new RequestStats();
        copy.Add(this);
        return copy;
    }
}
