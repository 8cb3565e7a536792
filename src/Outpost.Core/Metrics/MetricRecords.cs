namespace Outpost.Core.Metrics;

/// <summary>A node's resource use when it last reported (see the agent's NodeUsageProbe).</summary>
public sealed record NodeUsageSample(
    double CpuRatio,
    int CpuCount,
    long MemoryUsedBytes,
    long MemoryTotalBytes,
    long DiskUsedBytes,
    long DiskTotalBytes,
    long DataDirBytes,
    long AgentRssBytes,
    double AgentCpuRatio,
    long OpenConnections)
{
    public double MemoryRatio => MemoryTotalBytes > 0 ? (double)MemoryUsedBytes / MemoryTotalBytes : 0;

    public double DiskRatio => DiskTotalBytes > 0 ? (double)DiskUsedBytes / DiskTotalBytes : 0;
}

/// <summary>One minute of one app revision's requests on one node (Minute is the minute's start, UTC).</summary>
public sealed record AppMinute(string App, long Revision, string Node, DateTimeOffset Minute, RequestStats Stats);

/// <summary>A node's resource use in one minute: its last report in that minute.</summary>
public sealed record NodeMinute(string Node, DateTimeOffset Minute, NodeUsageSample Usage);
