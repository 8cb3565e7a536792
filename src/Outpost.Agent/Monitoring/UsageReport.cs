using Outpost.Protocol;

namespace Outpost.Agent.Monitoring;

/// <summary>
/// Which usage samples a heartbeat carries: one per clock minute (the server keeps a sample per
/// node per minute), and one at once when a resource that can run out jumps (memory by a tenth,
/// disk by 5 %, the data dir or the agent's memory by a quarter, connections by half) so an
/// alert on it need not wait for the minute. CPU, which swings with every neighbour's load, waits
/// for the minute. An idle node thus sends one sample a minute instead of one a beat, which was
/// most of what an idle link carried.
/// </summary>
public sealed class UsageReport
{
    private NodeUsage? _sent;
    private long _sentMinute = long.MinValue;

    /// <summary>The sample to send now, or null when the last one sent still tells the same story.</summary>
    public NodeUsage? Take(NodeUsage sample, DateTimeOffset now)
    {
        ArgumentNullException.ThrowIfNull(sample);
        var minute = now.ToUnixTimeSeconds() / 60;
        if (_sent is not null && minute == _sentMinute && !Moved(_sent, sample))
        {
            return null;
        }

        _sent = sample;
        _sentMinute = minute;
        return sample;
    }

    /// <summary>True when <paramref name="now"/> differs from <paramref name="sent"/> by more than noise.</summary>
    public static bool Moved(NodeUsage sent, NodeUsage now)
    {
        ArgumentNullException.ThrowIfNull(sent);
        ArgumentNullException.ThrowIfNull(now);
        return Beyond(now.MemoryUsedBytes, sent.MemoryUsedBytes, now.MemoryTotalBytes / 10) // 10 % of memory
            || Beyond(now.DiskUsedBytes, sent.DiskUsedBytes, now.DiskTotalBytes / 20) // 5 % of the disk
            || Beyond(now.DataDirBytes, sent.DataDirBytes, Math.Max(16L << 20, sent.DataDirBytes / 4)) // 16 MiB or a quarter
            || Beyond(now.AgentRssBytes, sent.AgentRssBytes, Math.Max(16L << 20, sent.AgentRssBytes / 4))
            || Beyond(now.OpenConnections, sent.OpenConnections, Math.Max(8, sent.OpenConnections / 2))
            || now.MemoryTotalBytes != sent.MemoryTotalBytes
            || now.DiskTotalBytes != sent.DiskTotalBytes
            || now.CpuCount != sent.CpuCount;
    }

    private static bool Beyond(long now, long sent, long step) => Math.Abs(now - sent) >= Math.Max(1, step);
}
