using Outpost.Agent.Monitoring;
using Outpost.Protocol;

namespace Outpost.Agent.Tests.Monitoring;

public sealed class UsageReportTests
{
    private static readonly DateTimeOffset Start = new(2026, 11, 30, 12, 0, 5, TimeSpan.Zero);

    private static NodeUsage Idle() => new()
    {
        CpuRatio = 0.02,
        AgentCpuRatio = 0.01,
        MemoryUsedBytes = 1L << 30,
        MemoryTotalBytes = 8L << 30,
        DiskUsedBytes = 10L << 30,
        DiskTotalBytes = 100L << 30,
        DataDirBytes = 50L << 20,
        AgentRssBytes = 40L << 20,
        OpenConnections = 3,
        CpuCount = 2,
    };

    [Fact]
    public void AnIdleNode_SendsOneSampleAMinute_OnTheMinute()
    {
        var report = new UsageReport();
        var sent = Enumerable.Range(0, 18).Select(i => (At: Start.AddSeconds(10 * i), Sample: report.Take(Idle(), Start.AddSeconds(10 * i))))
            .Where(s => s.Sample is not null).Select(s => s.At).ToList();

        // 12:00:05 (the first), then the first beat of 12:01 and of 12:02.
        Assert.Equal([Start, Start.AddSeconds(60), Start.AddSeconds(120)], sent);
    }

    [Fact]
    public void UseThatMoves_IsSentAtOnce_AndNoiseIsNot()
    {
        var report = new UsageReport();
        Assert.NotNull(report.Take(Idle(), Start));
        var noise = Idle();
        noise.CpuRatio += 0.1;
        noise.MemoryUsedBytes += 100L << 20;
        noise.DataDirBytes += 4L << 20;
        noise.OpenConnections += 5;
        Assert.Null(report.Take(noise, Start.AddSeconds(10)));

        var busy = Idle();
        busy.CpuRatio = 0.9; // CPU waits for the minute
        Assert.Null(report.Take(busy, Start.AddSeconds(20)));
        busy.MemoryUsedBytes += 1L << 30; // an eighth of memory
        Assert.Same(busy, report.Take(busy, Start.AddSeconds(20)));

        var grown = busy.Clone();
        grown.DiskUsedBytes += 6L << 30; // 6 % of the disk
        Assert.Same(grown, report.Take(grown, Start.AddSeconds(30)));

        var connections = grown.Clone();
        connections.OpenConnections = 40;
        Assert.Same(connections, report.Take(connections, Start.AddSeconds(40)));
        Assert.Null(report.Take(connections.Clone(), Start.AddSeconds(50)));
    }
}
