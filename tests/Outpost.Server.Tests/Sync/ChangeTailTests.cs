using Outpost.Core.Store;
using Outpost.Server.Store;
using Outpost.Server.Sync;

namespace Outpost.Server.Tests.Sync;

public sealed class ChangeTailTests : IAsyncLifetime
{
    private readonly string _dir = Directory.CreateTempSubdirectory("outpost-tail-").FullName;
    private SqliteControlPlaneStore _store = null!;

    public async Task InitializeAsync()
    {
        _store = new SqliteControlPlaneStore(Path.Combine(_dir, "outpost.db"));
        await _store.InitializeAsync(CancellationToken.None);
    }

    public async Task DisposeAsync()
    {
        await _store.DisposeAsync();
        Directory.Delete(_dir, recursive: true);
    }

    private async Task<long> Write(string kind, string name, string spec = "{}") =>
        (await _store.WriteAsync([new ResourceWrite { Op = WriteOp.Upsert, Kind = kind, Name = name, SpecJson = spec }], CancellationToken.None))[0].Resource.ResourceVersion;

    [Fact]
    public async Task OtherNodesJoining_ConcernNoSession_ButItsOwnNodeAndEverythingPlaceableDo()
    {
        using var tail = new ChangeTail(_store);
        var ct = CancellationToken.None;
        var start = await Write("Application", "hello");
        var joins = new List<long>();
        for (var i = 0; i < 50; i++)
        {
            joins.Add(await Write("Node", $"edge-{i}"));
        }

        Assert.False(await tail.AnyAsync(start, joins[^1], "edge-999", ChangeTail.ConcernsDesiredState, ct));
        Assert.True(await tail.AnyAsync(start, joins[^1], "edge-7", ChangeTail.ConcernsDesiredState, ct)); // its own join
        Assert.True(await tail.AnyAsync(start - 1, joins[^1], "edge-999", ChangeTail.ConcernsDesiredState, ct)); // the app
        Assert.False(await tail.AnyAsync(joins[^1], joins[^1], "edge-999", ChangeTail.ConcernsDesiredState, ct)); // an empty range

        var config = await Write("ConfigSet", "settings");
        var bucket = await Write("Bucket", "kv");
        Assert.True(await tail.AnyAsync(joins[^1], config, "edge-999", ChangeTail.ConcernsDesiredState, ct));
        Assert.False(await tail.AnyAsync(joins[^1], config, "edge-999", ChangeTail.ConcernsBuckets, ct));
        Assert.True(await tail.AnyAsync(config, bucket, "edge-999", ChangeTail.ConcernsBuckets, ct));
    }

    [Fact]
    public async Task ARangeOlderThanTheChangeLogHolds_OrNotYetReadable_CountsAsConcerning()
    {
        using var tail = new ChangeTail(_store);
        var ct = CancellationToken.None;
        for (var i = 0; i < 10; i++)
        {
            await Write("Node", $"edge-{i}");
        }

        await _store.CompactChangesAsync(5, ct);
        var last = await Write("Node", "edge-10");
        Assert.True(await tail.AnyAsync(2, last, "edge-999", ChangeTail.ConcernsDesiredState, ct)); // 3..5 are gone: cannot tell
        Assert.False(await tail.AnyAsync(6, last, "edge-999", ChangeTail.ConcernsDesiredState, ct));
        Assert.True(await tail.AnyAsync(last, last + 1, "edge-999", ChangeTail.ConcernsDesiredState, ct)); // not written yet
    }
}
