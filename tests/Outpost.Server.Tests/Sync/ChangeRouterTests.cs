using Microsoft.Extensions.Logging.Abstractions;
using Outpost.Core.Store;
using Outpost.Server.Store;
using Outpost.Server.Sync;

namespace Outpost.Server.Tests.Sync;

public sealed class ChangeRouterTests : IAsyncLifetime
{
    private readonly string _dir = Directory.CreateTempSubdirectory("outpost-router-").FullName;
    private SqliteControlPlaneStore _store = null!;
    private ChangeRouter _router = null!;

    public async Task InitializeAsync()
    {
        _store = new SqliteControlPlaneStore(Path.Combine(_dir, "outpost.db"));
        await _store.InitializeAsync(CancellationToken.None);
        _router = new ChangeRouter(_store, NullLogger<ChangeRouter>.Instance);
        await _router.StartAsync(CancellationToken.None);
    }

    public async Task DisposeAsync()
    {
        await _router.StopAsync(CancellationToken.None);
        _router.Dispose();
        await _store.DisposeAsync();
        Directory.Delete(_dir, recursive: true);
    }

    private async Task<long> Write(string kind, string name)
    {
        var revision = (await _store.WriteAsync([new ResourceWrite { Op = WriteOp.Upsert, Kind = kind, Name = name, SpecJson = "{}" }], CancellationToken.None))[0].Resource.ResourceVersion;
        await Routed(_router, revision);
        return revision;
    }

    private static async Task Routed(ChangeRouter router, long revision)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (router.Through < revision)
        {
            Assert.True(DateTime.UtcNow < deadline, $"revision {revision} was not routed");
            await Task.Delay(10);
        }
    }

    [Fact]
    public async Task ANodeJoining_WakesItsOwnSessionOnly_AndAPlaceableChangeWakesEveryone()
    {
        var ct = CancellationToken.None;
        var start = await Write("Application", "hello");
        var sessions = Enumerable.Range(0, 100).Select(i => _router.WaitAsync($"edge-{i}", start, ChangeRouter.Interest.DesiredState, ct)).ToList();
        var buckets = _router.WaitAsync("edge-0", start, ChangeRouter.Interest.Buckets, ct);

        await Write("Node", "edge-7");
        await Write("Node", "edge-new");
        await sessions[7].WaitAsync(TimeSpan.FromSeconds(30));
        Assert.Equal([7], sessions.Select((wait, i) => (wait, i)).Where(p => p.wait.IsCompleted).Select(p => p.i));

        await Write("ConfigSet", "settings"); // placed on nodes, but not a bucket
        await Task.WhenAll(sessions).WaitAsync(TimeSpan.FromSeconds(30));
        Assert.False(buckets.IsCompleted);
        await Write("Bucket", "kv");
        await buckets.WaitAsync(TimeSpan.FromSeconds(30));

        // A wait for a revision its node's own change has passed returns at once; one with nothing new waits.
        Assert.True(_router.WaitAsync("edge-7", start, ChangeRouter.Interest.Buckets, ct).IsCompleted);
        Assert.False(_router.WaitAsync("edge-50", _router.Through, ChangeRouter.Interest.DesiredState, ct).IsCompleted);
    }

    [Fact]
    public async Task ARead_OfANode_IsCurrent_UntilThatNodeIsWritten_OrAChangeIsNotYetRouted()
    {
        var readAt = await Write("Node", "edge-1");
        var placeable = await Write("Application", "hello");

        // Only a placeable change and another node's write since: the read still stands.
        await Write("Node", "edge-2");
        Assert.True(_router.NodeUnchanged("edge-1", readAt, _router.Through));

        // A revision the router has not routed yet may hold a write of the node: read it again.
        Assert.False(_router.NodeUnchanged("edge-1", readAt, _router.Through + 1));

        // Its own write: read it again; a read made at or after that write stands.
        var written = (await _store.WriteAsync([new ResourceWrite { Op = WriteOp.Upsert, Kind = "Node", Name = "edge-1", SpecJson = "{}", Labels = new Dictionary<string, string> { ["site"] = "north" } }], CancellationToken.None))[0].Resource.ResourceVersion;
        await Routed(_router, written);
        Assert.True(written > placeable);
        Assert.False(_router.NodeUnchanged("edge-1", placeable, _router.Through));
        Assert.True(_router.NodeUnchanged("edge-1", written, _router.Through));

        // A router that starts past a compacted stretch cannot tell whom it wrote: every read is stale.
        await Write("ConfigSet", "after");
        await _store.CompactChangesAsync(_router.Through - 1, CancellationToken.None);
        using var late = new ChangeRouter(_store, NullLogger<ChangeRouter>.Instance);
        await late.StartAsync(CancellationToken.None);
        await Routed(late, _router.Through);
        Assert.False(late.NodeUnchanged("edge-2", written, late.Through));
        await late.StopAsync(CancellationToken.None);
    }

    [Fact]
    public async Task AListOfTheNodes_StandsThroughOtherChanges_UntilSomeNodeIsWritten()
    {
        var listedAt = await Write("Node", "edge-1");

        // Changes sent to every node, none of them a Node: the list still names them all.
        await Write("ConfigSet", "settings");
        await Write("Application", "hello");
        Assert.True(_router.NodesUnchanged(listedAt, _router.Through));

        // Not yet routed, or never listed: list again.
        Assert.False(_router.NodesUnchanged(listedAt, _router.Through + 1));
        Assert.False(_router.NodesUnchanged(-1, _router.Through));

        // A node joining, and a node deleted: list again; a list made after stands.
        var joined = await Write("Node", "edge-2");
        Assert.False(_router.NodesUnchanged(listedAt, _router.Through));
        Assert.True(_router.NodesUnchanged(joined, _router.Through));
        var deleted = (await _store.WriteAsync([new ResourceWrite { Op = WriteOp.Delete, Kind = "Node", Name = "edge-1" }], CancellationToken.None))[0].Resource.ResourceVersion;
        await Routed(_router, deleted);
        Assert.False(_router.NodesUnchanged(joined, _router.Through));
        Assert.True(_router.NodesUnchanged(deleted, _router.Through));

        // A router that starts past a compacted stretch cannot tell: list again.
        await Write("ConfigSet", "after");
        await _store.CompactChangesAsync(_router.Through - 1, CancellationToken.None);
        using var late = new ChangeRouter(_store, NullLogger<ChangeRouter>.Instance);
        await late.StartAsync(CancellationToken.None);
        await Routed(late, _router.Through);
        Assert.False(late.NodesUnchanged(deleted, late.Through));
        await late.StopAsync(CancellationToken.None);
    }

    [Fact]
    public async Task ASessionThatEnds_LeavesNoWaitBehind_AndACompactedLogWakesEveryone()
    {
        var start = await Write("Application", "hello");
        using var gone = new CancellationTokenSource();
        var left = _router.WaitAsync("edge-1", start, ChangeRouter.Interest.DesiredState, gone.Token);
        await gone.CancelAsync();
        Assert.True(left.IsCanceled);

        // A router that starts on a compacted log cannot tell what the dropped changes were: everyone wakes.
        for (var i = 0; i < 5; i++)
        {
            await Write("Node", $"other-{i}");
        }

        await _store.CompactChangesAsync(_router.Through - 1, CancellationToken.None);
        using var late = new ChangeRouter(_store, NullLogger<ChangeRouter>.Instance);
        var waiting = late.WaitAsync("edge-1", 1, ChangeRouter.Interest.Buckets, CancellationToken.None);
        await late.StartAsync(CancellationToken.None);
        await waiting.WaitAsync(TimeSpan.FromSeconds(30));
        await late.StopAsync(CancellationToken.None);
    }
}
