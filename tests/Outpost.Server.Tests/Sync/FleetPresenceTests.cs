using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using Outpost.Core.Api;
using Outpost.Server.Hosting;
using Outpost.Server.Store;
using Outpost.Server.Sync;

namespace Outpost.Server.Tests.Sync;

/// <summary>Two replicas on one store: each knows the other's nodes, sees them go quiet, and sees them leave when the other dies.</summary>
public sealed class FleetPresenceTests : IAsyncLifetime
{
    private readonly string _dir = Directory.CreateTempSubdirectory("outpost-presence-").FullName;
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 11, 30, 12, 0, 0, TimeSpan.Zero));
    private readonly ServerOptions _options;
    private SqliteControlPlaneStore _storeA = null!;
    private SqliteControlPlaneStore _storeB = null!;

    public FleetPresenceTests() => _options = new ServerOptions { DataDir = _dir, NodeLease = TimeSpan.FromSeconds(30) };

    public async Task InitializeAsync()
    {
        var path = Path.Combine(_dir, "outpost.db");
        _storeA = new SqliteControlPlaneStore(path, _time);
        _storeB = new SqliteControlPlaneStore(path, _time);
        await _storeA.InitializeAsync(CancellationToken.None);
        await _storeB.InitializeAsync(CancellationToken.None);
    }

    public async Task DisposeAsync()
    {
        await _storeA.DisposeAsync();
        await _storeB.DisposeAsync();
        Directory.Delete(_dir, recursive: true);
    }

    private (FleetPresence Presence, NodeLeases Local) Replica(SqliteControlPlaneStore store)
    {
        var local = new NodeLeases(_time);
        var leadership = new Leadership(store, _time, NullLogger<Leadership>.Instance);
        return (new FleetPresence(store, local, leadership, _options, _time, NullLogger<FleetPresence>.Instance), local);
    }

    private string State(FleetPresence presence, string node)
    {
        var lease = presence.Get(node);
        return NodeState.Derive(lease?.Connected == true, lease?.LastHeartbeat, _time.GetUtcNow(), _options.NodeLease);
    }

    /// <summary>Advances the clock by one renewal and lets the named replicas take their turn.</summary>
    private async Task Turn(params FleetPresence[] replicas)
    {
        _time.Advance(FleetPresence.RenewEvery);
        foreach (var replica in replicas)
        {
            await replica.TickAsync(CancellationToken.None);
        }
    }

    [Fact]
    public async Task AReplicaKnowsTheOthersNodes_SeesThemGoQuiet_AndSeesThemLeaveWhenThatReplicaDies()
    {
        var (a, localA) = Replica(_storeA);
        var (b, localB) = Replica(_storeB);
        Assert.NotEqual(a.Replica, b.Replica);
        var session = localA.Connect("edge-1");
        localA.Connect("edge-2");
        await Turn(a, b);

        // B holds no stream of edge-1, and still knows it Ready on A; nobody knows edge-3.
        Assert.Null(localB.Get("edge-1"));
        Assert.Equal(NodeState.Ready, State(b, "edge-1"));
        Assert.Equal(NodeState.Offline, State(b, "edge-3"));

        // edge-1 keeps beating for a minute (A writes nothing per beat); edge-2 falls silent.
        for (var i = 0; i < 30; i++)
        {
            localA.Beat("edge-1", session);
            await Turn(a, b);
        }

        Assert.Equal(NodeState.Ready, State(b, "edge-1"));
        Assert.Equal(NodeState.NotReady, State(a, "edge-2"));
        Assert.Equal(NodeState.NotReady, State(b, "edge-2"));
        Assert.Equal(localA.Get("edge-2")!.LastHeartbeat, b.Get("edge-2")!.LastHeartbeat);

        // A dies without a word: once its lease runs out, its nodes are NotReady on B, then Offline a node lease later.
        var diedAt = _time.GetUtcNow();
        while (_time.GetUtcNow() - diedAt < FleetPresence.ReplicaTtl)
        {
            Assert.Equal(NodeState.Ready, State(b, "edge-1"));
            await Turn(b);
        }

        Assert.Equal(NodeState.NotReady, State(b, "edge-1"));
        Assert.False(b.Get("edge-1")!.Connected);
        while (_time.GetUtcNow() - diedAt <= _options.NodeLease)
        {
            await Turn(b);
        }

        Assert.Equal(NodeState.Offline, State(b, "edge-1"));

        // edge-1 reconnects to B: Ready again there, and A's late word about its old stream changes nothing.
        localB.Connect("edge-1");
        await Turn(b);
        Assert.Equal(NodeState.Ready, State(b, "edge-1"));
        localA.Disconnect("edge-1", session);
        await a.TickAsync(CancellationToken.None);
        await Turn(b);
        var row = (await _storeB.ListPresenceAsync(CancellationToken.None)).Single(p => p.Node == "edge-1");
        Assert.Equal((b.Replica, true), (row.Replica, row.Connected));
    }

    [Fact]
    public async Task ACleanStop_ClosesTheReplicasStreams_SoTheOthersSeeThemLeaveAtOnce()
    {
        var (a, localA) = Replica(_storeA);
        var (b, _) = Replica(_storeB);
        localA.Connect("edge-1");
        await Turn(a, b);
        Assert.Equal(NodeState.Ready, State(b, "edge-1"));

        await a.StopCleanlyAsync();
        await Turn(b);
        Assert.Equal(NodeState.NotReady, State(b, "edge-1"));
        Assert.False(b.Get("edge-1")!.Connected);
    }
}
