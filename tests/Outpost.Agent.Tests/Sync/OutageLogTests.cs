using Microsoft.Extensions.Time.Testing;
using Outpost.Agent.Sync;

namespace Outpost.Agent.Tests.Sync;

public sealed class OutageLogTests
{
    [Fact]
    public void AnHourOffline_IsOneWarningAndASummaryAMinute_NotALinePerRetry()
    {
        var time = new FakeTimeProvider(new DateTimeOffset(2026, 11, 29, 12, 0, 0, TimeSpan.Zero));
        var log = new OutageLog(time);
        var reports = new List<OutageReport>();
        for (var attempt = 0; attempt < 1200; attempt++) // a retry every 3 s for an hour
        {
            reports.Add(log.Failed().Report);
            time.Advance(TimeSpan.FromSeconds(3));
        }

        Assert.Equal(OutageReport.Warning, reports[0]);
        Assert.Equal(1, reports.Count(r => r == OutageReport.Warning));
        Assert.InRange(reports.Count(r => r == OutageReport.Summary), 59, 60);
        var back = log.Recovered();
        Assert.Equal((1200, TimeSpan.FromHours(1)), back);
    }

    [Fact]
    public void AfterRecovering_TheNextFailureWarnsAgain()
    {
        var time = new FakeTimeProvider();
        var log = new OutageLog(time);
        Assert.Null(log.Recovered()); // connected with no outage before: nothing to say

        Assert.Equal(OutageReport.Warning, log.Failed().Report);
        Assert.Equal(OutageReport.Quiet, log.Failed().Report);
        Assert.Equal(2, log.Recovered()!.Value.Attempts);
        Assert.Equal(OutageReport.Warning, log.Failed().Report);
    }
}
