using Outpost.Agent.Sync;

namespace Outpost.Agent.Tests.Sync;

public sealed class BackoffTests
{
    [Fact]
    public void Delays_StayWithinADoublingCeilingCappedAtMax()
    {
        var backoff = new Backoff(TimeSpan.FromMilliseconds(100), TimeSpan.FromSeconds(2), new Random(42));

        var delays = Enumerable.Range(0, 20).Select(_ => backoff.Next().TotalMilliseconds).ToList();

        for (var i = 0; i < delays.Count; i++)
        {
            var ceiling = Math.Min(2000, 100 * Math.Pow(2, i));
            Assert.InRange(delays[i], 50, ceiling);
        }

        Assert.True(delays.Skip(10).Distinct().Count() > 5, "jitter spreads reconnects instead of repeating one delay");
    }

    [Fact]
    public void Reset_StartsOverFromTheInitialCeiling()
    {
        var backoff = new Backoff(TimeSpan.FromMilliseconds(100), TimeSpan.FromSeconds(10), new Random(1));
        for (var i = 0; i < 10; i++)
        {
            backoff.Next();
        }

        backoff.Reset();

        Assert.InRange(backoff.Next().TotalMilliseconds, 50, 100);
    }
}
