using System.Text;
using Microsoft.Extensions.Time.Testing;
using Outpost.Agent.State;
using Outpost.Core.Sync;

namespace Outpost.Agent.Tests.State;

public sealed class LocalKvTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("outpost-kv-").FullName;
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 11, 26, 12, 0, 0, TimeSpan.Zero));

    private LocalDataStore Open(string name = "data.db") => new(Path.Combine(_dir, name), _time, origin: "edge-1");

    private static byte[] B(string text) => Encoding.UTF8.GetBytes(text);

    [Fact]
    public void AKeyWrittenManyTimesOffline_ShipsOnce_WithTheBaseOfItsFirstUnshippedWrite()
    {
        using var data = Open();
        var cloud = new BucketWrite("mode", new VersionedValue(B("eco"), new HlcTimestamp(_time.GetUtcNow().ToUnixTimeMilliseconds(), 0, "cloud")), null);
        data.ApplyRemote("settings", ConflictPolicy.Lww, [cloud], revision: 7);

        _time.Advance(TimeSpan.FromSeconds(1));
        data.KvSet("settings", "mode", B("turbo"), shipUp: true);
        data.KvSet("settings", "mode", B("quiet"), shipUp: true);
        data.KvDelete("settings", "other", shipUp: true);

        var pending = data.ReadKvPending(10);
        Assert.Equal(2, pending.Count);
        Assert.Equal("quiet", Encoding.UTF8.GetString(pending[0].Version.Value!));
        Assert.Equal(cloud.Version.Stamp, pending[0].Base);
        Assert.Equal("edge-1", pending[0].Version.Stamp.Origin);
        Assert.Null(pending[1].Version.Value); // a deletion travels as a tombstone
        Assert.Equal(new Dictionary<string, long> { ["settings"] = 7 }, data.KvCursors());
    }

    [Fact]
    public void Ack_ForgetsOnlyWhatItCovers_AKeyWrittenAgainStaysPending()
    {
        using var data = Open();
        data.KvSet("b", "x", B("1"), shipUp: true);
        data.KvSet("b", "y", B("1"), shipUp: true);
        var through = data.ReadKvPending(10)[^1].Sequence;
        data.KvSet("b", "x", B("2"), shipUp: true); // after the batch was read

        data.AckKvThrough(through);

        var left = Assert.Single(data.ReadKvPending(10));
        Assert.Equal(("x", "2"), (left.Key, Encoding.UTF8.GetString(left.Version.Value!)));
    }

    [Fact]
    public void ApplyRemote_MergesByPolicy_AndKeepsALosingLocalWritePendingForTheServer()
    {
        using var data = Open();
        data.KvSet("b", "k", B("edge"), shipUp: true);
        var earlier = new HlcTimestamp(_time.GetUtcNow().ToUnixTimeMilliseconds() - 1000, 0, "cloud");

        Assert.Equal(0, data.ApplyRemote("b", ConflictPolicy.Lww, [new BucketWrite("k", new VersionedValue(B("old cloud"), earlier), null)], 1));
        Assert.Equal("edge", Encoding.UTF8.GetString(data.KvGet("b", "k")!));

        Assert.Equal(1, data.ApplyRemote("b", ConflictPolicy.CloudWins, [new BucketWrite("k", new VersionedValue(B("cloud"), earlier with { Counter = 1 }), null)], 2));
        Assert.Equal("cloud", Encoding.UTF8.GetString(data.KvGet("b", "k")!));
        Assert.Equal("edge", Encoding.UTF8.GetString(Assert.Single(data.ReadKvPending(10)).Version.Value!));

        data.ApplyRemote("b", ConflictPolicy.Lww, [new BucketWrite("k", new VersionedValue(null, earlier with { WallMs = earlier.WallMs + 5000 }), null)], 3);
        Assert.Null(data.KvGet("b", "k"));
        Assert.Equal(3, data.KvCursors()["b"]);
    }

    [Fact]
    public void AfterARestart_StampsNeverGoBelowEarlierWrites_EvenIfTheClockWentBack()
    {
        HlcTimestamp before;
        using (var data = Open())
        {
            data.KvSet("b", "k", B("1"), shipUp: true);
            before = data.ReadKvPending(1)[0].Version.Stamp;
        }

        var wound = new FakeTimeProvider(_time.GetUtcNow() - TimeSpan.FromHours(1)); // the wall clock went back an hour
        using var reopened = new LocalDataStore(Path.Combine(_dir, "data.db"), wound, origin: "edge-1");
        reopened.KvSet("b", "k", B("2"), shipUp: true);

        Assert.True(reopened.ReadKvPending(1)[0].Version.Stamp > before);
        Assert.Equal("2", Encoding.UTF8.GetString(reopened.KvGet("b", "k")!));
    }

    [Fact]
    public void LocalOnlyBuckets_DeleteOutright_AndNeverShip()
    {
        using var data = Open();
        data.KvSet("local", "k", B("v"));

        Assert.True(data.KvDelete("local", "k"));
        Assert.False(data.KvDelete("local", "k"));
        Assert.Empty(data.ReadKvPending(10));
        Assert.Null(data.KvGetVersioned("local", "k"));
    }

    public void Dispose()
    {
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        Directory.Delete(_dir, recursive: true);
    }
}
