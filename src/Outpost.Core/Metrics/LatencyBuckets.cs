namespace Outpost.Core.Metrics;

/// <summary>
/// The request latency histogram's bucket bounds, in seconds: the same on every agent and on
/// the server, so agents ship plain counts per bucket and the server adds them up.
/// </summary>
public static class LatencyBuckets
{
    /// <summary>Upper bounds (inclusive) of every bucket but the last, which is +Inf.</summary>
    public static IReadOnlyList<double> Bounds { get; } = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

    /// <summary>Buckets including +Inf.</summary>
    public static int Count => Bounds.Count + 1;

    /// <summary>The bucket a duration falls in.</summary>
    public static int IndexOf(double seconds)
    {
        var bounds = Bounds;
        for (var i = 0; i < bounds.Count; i++)
        {
            if (seconds <= bounds[i])
            {
                return i;
            }
        }

        return bounds.Count;
    }

    /// <summary>
    /// The q-quantile (0..1) of per-bucket counts, interpolated linearly inside its bucket as
    /// Prometheus's histogram_quantile does; a quantile in the +Inf bucket reports the last bound.
    /// Null when nothing was counted.
    /// </summary>
    public static double? Quantile(IReadOnlyList<long> counts, double q)
    {
        ArgumentNullException.ThrowIfNull(counts);
        var total = counts.Sum();
        if (total == 0)
        {
            return null;
        }

        var rank = q * total;
        long seen = 0;
        for (var i = 0; i < counts.Count; i++)
        {
            if (counts[i] == 0 || seen + counts[i] < rank)
            {
                seen += counts[i];
                continue;
            }

            if (i >= Bounds.Count)
            {
                return Bounds[^1];
            }

            var lower = i == 0 ? 0 : Bounds[i - 1];
            return lower + ((Bounds[i] - lower) * (rank - seen) / counts[i]);
        }

        return Bounds[^1];
    }
}
