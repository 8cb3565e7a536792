using Outpost.Core.Metrics;

namespace Outpost.Protocol;

/// <summary>App traffic and node usage between their heartbeat form and the metrics types.</summary>
public static class MetricsWire
{
    public static AppTraffic ToWire(string app, long revision, RequestStats delta)
    {
        ArgumentNullException.ThrowIfNull(delta);
        var traffic = new AppTraffic
        {
            Name = app,
            Generation = revision,
            Requests = delta.Requests,
            ServerErrors = delta.ServerErrors,
            ClientErrors = delta.ClientErrors,
            Timeouts = delta.Timeouts,
            LimitHits = delta.LimitHits,
            LatencySumSeconds = delta.LatencySumSeconds,
            MemoryPeakBytes = delta.MemoryPeakBytes,
        };
        traffic.LatencyBuckets.AddRange(delta.TrimmedBuckets());
        return traffic;
    }

    /// <summary>Reads a delta; a histogram with more buckets than Outpost's is an <see cref="InvalidDataException"/>.</summary>
    public static RequestStats FromWire(AppTraffic traffic)
    {
        ArgumentNullException.ThrowIfNull(traffic);
        var delta = new RequestStats
        {
            Requests = traffic.Requests,
            ClientErrors = traffic.ClientErrors,
            ServerErrors = traffic.ServerErrors,
            Timeouts = traffic.Timeouts,
            LimitHits = traffic.LimitHits,
            LatencySumSeconds = traffic.LatencySumSeconds,
            MemoryPeakBytes = traffic.MemoryPeakBytes,
        };
        delta.AddBuckets(traffic.LatencyBuckets);
        return delta;
    }

    public static NodeUsageSample FromWire(NodeUsage usage)
    {
        ArgumentNullException.ThrowIfNull(usage);
        return new NodeUsageSample(usage.CpuRatio, usage.CpuCount, usage.MemoryUsedBytes, usage.MemoryTotalBytes, usage.DiskUsedBytes, usage.DiskTotalBytes,
            usage.DataDirBytes, usage.AgentRssBytes, usage.AgentCpuRatio, usage.OpenConnections);
    }
}
