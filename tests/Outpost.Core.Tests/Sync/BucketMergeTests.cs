using Microsoft.Extensions.Time.Testing;
using Outpost.Core.Sync;

namespace Outpost.Core.Tests.Sync;

public sealed class HybridLogicalClockTests
{
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 11, 26, 0, 0, 0, TimeSpan.Zero));

    /// <summary>A wall clock that can be stepped back, as NTP sometimes does.</summary>
    private sealed class SteppedClock(DateTimeOffset now) : TimeProvider
    {
        public DateTimeOffset Now { get; set; } = now;

        public override DateTimeOffset GetUtcNow() => Now;
    }

    [Fact]
    public void Now_NeverGoesBackwards_EvenWhenTheWallClockDoes()
    {
        var wall = new SteppedClock(_time.GetUtcNow());
        var clock = new HybridLogicalClock("edge-1", wall);
        var first = clock.Now();
        wall.Now -= TimeSpan.FromSeconds(30); // NTP stepped the clock back
        var second = clock.Now();
        var third = clock.Now();

        Assert.True(second > first);
        Assert.True(third > second);
        Assert.Equal(first.WallMs, third.WallMs);
    }

    [Fact]
    public void Observe_MovesPastARemoteStampFromTheFuture()
    {
        var edge = new HybridLogicalClock("edge-1", _time);
        var remote = new HlcTimestamp(_time.GetUtcNow().ToUnixTimeMilliseconds() + 60_000, 5, "cloud");

        var receipt = edge.Observe(remote);
        var next = edge.Now();

        Assert.True(receipt > remote);
        Assert.True(next > receipt);
    }

    [Fact]
    public void Stamp_RoundTripsAsText_AndRejectsGarbage()
    {
        var stamp = new HlcTimestamp(1764115200000, 3, "edge-7");

        Assert.Equal(stamp, HlcTimestamp.Parse(stamp.ToString()));
        Assert.Throws<FormatException>(() => HlcTimestamp.Parse("yesterday"));
    }
}

public sealed class BucketMergeTests
{
    private static VersionedValue V(long wall, int counter, string origin, string? value) =>
        new(value is null ? null : System.Text.Encoding.UTF8.GetBytes(value), new HlcTimestamp(wall, counter, origin));

    private static string? Text(VersionedValue v) => v.Value is null ? null : System.Text.Encoding.UTF8.GetString(v.Value);

    [Fact]
    public void Lww_LaterStampWins_AndTheLoserIsReturned()
    {
        var (winner, loser) = BucketMerge.Resolve(V(100, 0, "cloud", "old"), V(200, 0, "edge-1", "new"), ConflictPolicy.Lww);

        Assert.Equal("new", Text(winner));
        Assert.Equal("old", Text(loser!));
    }

    [Fact]
    public void CloudWins_BeatsALaterEdgeWrite_EdgeWins_TheOppositeWay()
    {
        var cloud = V(100, 0, "cloud", "from cloud");
        var edge = V(200, 0, "edge-1", "from edge");

        Assert.Equal("from cloud", Text(BucketMerge.Resolve(edge, cloud, ConflictPolicy.CloudWins).Winner));
        Assert.Equal("from edge", Text(BucketMerge.Resolve(cloud, edge, ConflictPolicy.EdgeWins).Winner));
    }

    [Fact]
    public void TwoEdgeWrites_UnderCloudWins_FallBackToLww()
    {
        var (winner, _) = BucketMerge.Resolve(V(300, 0, "edge-1", "a"), V(100, 0, "edge-2", "b"), ConflictPolicy.CloudWins);

        Assert.Equal("a", Text(winner));
    }

    [Fact]
    public void SameWriteTwice_IsNoConflict()
    {
        var write = V(100, 1, "edge-1", "x");

        Assert.Null(BucketMerge.Resolve(write, write with { }, ConflictPolicy.Lww).Loser);
    }

    [Fact]
    public void Deletion_IsAVersionLikeAnyOther()
    {
        var (winner, _) = BucketMerge.Resolve(V(100, 0, "edge-1", "x"), V(200, 0, "cloud", null), ConflictPolicy.Lww);

        Assert.Null(winner.Value);
    }

    [Theory]
    [InlineData(ConflictPolicy.Lww)]
    [InlineData(ConflictPolicy.CloudWins)]
    [InlineData(ConflictPolicy.EdgeWins)]
    public void Resolution_IsCommutativeAndOrderIndependent(ConflictPolicy policy)
    {
        var random = new Random(1234);
        string[] origins = ["cloud", "edge-1", "edge-2", "edge-3"];
        for (var round = 0; round < 500; round++)
        {
            // Close stamps on purpose: equal walls and counters happen, origins break ties.
            var versions = Enumerable.Range(0, random.Next(2, 6))
                .Select(i => V(random.Next(0, 3), random.Next(0, 2), origins[random.Next(origins.Length)], $"v{round}.{i}"))
                .DistinctBy(v => v.Stamp)
                .ToList();
            var expected = BucketMerge.ResolveAll(versions, policy).Winner;

            for (var shuffle = 0; shuffle < 5; shuffle++)
            {
                var order = versions.OrderBy(_ => random.Next()).ToList();
                var folded = order.Aggregate((x, y) => BucketMerge.Resolve(x, y, policy).Winner);
                Assert.Equal(expected.Stamp, folded.Stamp);
            }

            foreach (var a in versions)
            {
                foreach (var b in versions)
                {
                    Assert.Equal(BucketMerge.Resolve(a, b, policy).Winner.Stamp, BucketMerge.Resolve(b, a, policy).Winner.Stamp);
                }
            }
        }
    }

    [Fact]
    public void ResolveAll_ReturnsEveryLoserOnce()
    {
        var versions = new[] { V(1, 0, "edge-1", "a"), V(3, 0, "cloud", "c"), V(2, 0, "edge-2", "b"), V(2, 0, "edge-2", "b") };

        var (winner, losers) = BucketMerge.ResolveAll(versions, ConflictPolicy.Lww);

        Assert.Equal("c", Text(winner));
        Assert.Equal(["a", "b"], losers.Select(Text));
    }

    [Fact]
    public void Decide_AnOverwriteOfASeenValue_IsNoConflict()
    {
        var cloud = V(100, 0, "cloud", "from cloud");
        var edgeEdit = new BucketWrite("k", V(200, 0, "edge-1", "edited"), Base: cloud.Stamp);

        var decision = BucketMerge.Decide(cloud, null, edgeEdit, ConflictPolicy.Lww);

        Assert.True(decision.Store);
        Assert.Null(decision.Conflict);
    }

    [Fact]
    public void Decide_ConcurrentWritesFromTwoWriters_LogTheLoser()
    {
        var cloud = V(200, 0, "cloud", "cloud value");
        var offlineEdit = new BucketWrite("k", V(100, 0, "edge-1", "edge value"), Base: null);

        var decision = BucketMerge.Decide(cloud, null, offlineEdit, ConflictPolicy.Lww);

        Assert.False(decision.Store);
        Assert.NotNull(decision.Conflict);
        Assert.Equal("cloud value", Text(decision.Conflict.Value.Winner));
        Assert.Equal("edge value", Text(decision.Conflict.Value.Loser));
    }

    [Fact]
    public void Decide_ThePolicyOverridesEvenAnOverwrite_AndThatIsAConflict()
    {
        var cloud = V(100, 0, "cloud", "from cloud");
        var edgeEdit = new BucketWrite("k", V(200, 0, "edge-1", "edited"), Base: cloud.Stamp);

        var decision = BucketMerge.Decide(cloud, null, edgeEdit, ConflictPolicy.CloudWins);

        Assert.False(decision.Store);
        Assert.Equal("edited", Text(decision.Conflict!.Value.Loser));
    }

    [Fact]
    public void Decide_OneWritersSuccessiveValues_AndRedeliveries_AreNotConflicts()
    {
        var first = V(100, 0, "edge-1", "1");
        var later = new BucketWrite("k", V(300, 0, "edge-1", "3"), Base: null);
        var stale = new BucketWrite("k", first, Base: null);

        Assert.Null(BucketMerge.Decide(first, null, later, ConflictPolicy.Lww).Conflict);
        Assert.True(BucketMerge.Decide(first, null, later, ConflictPolicy.Lww).Store);
        Assert.True(BucketMerge.Decide(first, null, stale, ConflictPolicy.Lww).Duplicate);
        Assert.False(BucketMerge.Decide(later.Version, null, new BucketWrite("k", first, null), ConflictPolicy.Lww).Store);
    }

    [Theory]
    [InlineData(ConflictPolicy.Lww)]
    [InlineData(ConflictPolicy.CloudWins)]
    [InlineData(ConflictPolicy.EdgeWins)]
    public void Decide_ReplicasThatSeeTheSameWritesInAnyOrder_HoldTheSameValue(ConflictPolicy policy)
    {
        var random = new Random(42);
        string[] origins = ["cloud", "edge-1", "edge-2"];
        for (var round = 0; round < 300; round++)
        {
            var writes = Enumerable.Range(0, random.Next(2, 7))
                .Select(i => new BucketWrite("k", V(random.Next(0, 4), random.Next(0, 2), origins[random.Next(origins.Length)], i % 3 == 0 ? null : $"v{i}"), null))
                .DistinctBy(w => w.Version.Stamp)
                .ToList();
            VersionedValue? first = null;
            for (var replica = 0; replica < 4; replica++)
            {
                VersionedValue? current = null;
                foreach (var write in writes.OrderBy(_ => random.Next()))
                {
                    if (BucketMerge.Decide(current, null, write, policy).Store)
                    {
                        current = write.Version;
                    }
                }

                first ??= current;
                Assert.Equal(first!.Stamp, current!.Stamp);
            }

            Assert.Equal(BucketMerge.ResolveAll(writes.Select(w => w.Version), policy).Winner.Stamp, first!.Stamp);
        }
    }
}
