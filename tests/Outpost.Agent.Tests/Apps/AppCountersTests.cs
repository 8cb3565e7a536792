using Outpost.Agent.Apps;
using Outpost.Core.Metrics;
using Outpost.Wasm.Wagi;

namespace Outpost.Agent.Tests.Apps;

public sealed class AppCountersTests
{
    [Fact]
    public void TakeDelta_ReportsEachAnswerOnce_WhileTotalsKeepGrowing()
    {
        var counters = new AppCounters();
        counters.Record(200, 0.002, WagiLimit.None, 131072);
        counters.Record(500, 0.004, WagiLimit.None, 65536);
        counters.Record(504, 1.2, WagiLimit.Timeout, 65536);
        counters.Record(404, 0.0001, WagiLimit.None, 65536);
        counters.RecordLimit(AppLimitKind.Concurrency);

        var first = counters.TakeDelta();
        Assert.Equal(4, first.Requests);
        Assert.Equal(2, first.ServerErrors);
        Assert.Equal(1, first.ClientErrors);
        Assert.Equal(1, first.Timeouts);
        Assert.Equal(1, first.LimitHits);
        Assert.Equal(131072, first.MemoryPeakBytes);
        Assert.Equal(1, first.Buckets[LatencyBuckets.IndexOf(1.2)]);
        Assert.Equal(1.2061, first.LatencySumSeconds, 4);

        Assert.True(counters.TakeDelta().IsEmpty);
        counters.Record(200, 0.002, WagiLimit.Memory, 4096);
        var second = counters.TakeDelta();
        Assert.Equal(1, second.Requests);
        Assert.Equal(1, second.LimitHits);
        Assert.Equal(4096, second.MemoryPeakBytes); // the peak since the last report

        var totals = counters.Totals();
        Assert.Equal(5, totals.Requests);
        Assert.Equal(2, totals.LimitHits);
        Assert.Equal(131072, totals.MemoryPeakBytes);
        Assert.Equal(2, totals.Buckets[LatencyBuckets.IndexOf(0.002)]);
        Assert.Contains((AppLimitKind.Memory, 1L), counters.LimitHits());
        Assert.Contains((AppLimitKind.Concurrency, 1L), counters.LimitHits());
    }
}
