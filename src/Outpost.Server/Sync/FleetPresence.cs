using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Outpost.Core.Api;
using Outpost.Core.Store;

namespace Outpost.Server.Sync;

/// <summary>
/// Which nodes are connected and beating across every replica. Each replica holds a lease of
/// its own (<see cref="ReplicaLeasePrefix"/> + its name), renewed every <see cref="RenewEvery"/>,
/// and writes to the store what changes about the streams it serves: a stream opened or closed,
/// a node gone quiet or beating again. It does not write each heartbeat: while a node beats, its
/// replica's lease vouches for it, so an idle fleet costs the store one lease renewal per replica.
/// Readers (node events, rollouts, the API) ask <see cref="Get"/>: this replica's own streams
/// first, then the others' as last read from the store (every <see cref="RenewEvery"/>, and only
/// while another replica has been alive lately). A node whose replica died counts from that
/// replica's last renewal: NotReady at once, Offline once the node lease has run out.
/// </summary>
public sealed partial class FleetPresence(
    IControlPlaneStore store,
    NodeLeases local,
    Hosting.Leadership leadership,
    Hosting.ServerOptions options,
    TimeProvider time,
    ILogger<FleetPresence> logger) : BackgroundService
{
    public const string ReplicaLeasePrefix = "replica/";

    /// <summary>How long a replica's word holds after its last renewal.</summary>
    public static readonly TimeSpan ReplicaTtl = TimeSpan.FromSeconds(10);

    public static readonly TimeSpan RenewEvery = TimeSpan.FromSeconds(2);

    /// <summary>How often changes of this replica's streams are written.</summary>
    private static readonly TimeSpan FlushEvery = TimeSpan.FromMilliseconds(500);

    /// <summary>Replica leases this long out of date are deleted (by the leader).</summary>
    private static readonly TimeSpan ForgetReplicasAfter = TimeSpan.FromHours(1);

    /// <summary>What this replica last wrote of each node: by session, open, beating.</summary>
    private readonly Dictionary<string, (long Session, bool Connected, bool Beating)> _written = new(StringComparer.Ordinal);

    private readonly HashSet<string> _unwritten = new(StringComparer.Ordinal);

    private volatile Snapshot _others = Snapshot.Empty;

    private sealed record Snapshot(IReadOnlyDictionary<string, NodePresence> Nodes, IReadOnlyDictionary<string, DateTimeOffset> ReplicasUntil)
    {
        public static readonly Snapshot Empty = new(new Dictionary<string, NodePresence>(), new Dictionary<string, DateTimeOffset>());
    }

    /// <summary>This replica's name in its lease and in the presence rows it writes.</summary>
    public string Replica => leadership.Holder;

    /// <summary>
    /// A node's stream as the fleet knows it: this replica's when it holds it open, else the
    /// newer of this replica's closed one and another replica's as last read.
    /// </summary>
    public NodeLeases.Lease? Get(string node)
    {
        var mine = local.Get(node);
        if (mine is { Connected: true })
        {
            return mine;
        }

        var others = _others;
        if (!others.Nodes.TryGetValue(node, out var row) || row.Replica == Replica || (mine is not null && row.Since <= mine.Since))
        {
            return mine;
        }

        // The replica's lease vouches for its streams until it runs out; a beating node last beat
        // no earlier than the replica's last renewal.
        var now = time.GetUtcNow();
        var until = others.ReplicasUntil.TryGetValue(row.Replica, out var expires) ? expires : DateTimeOffset.MinValue;
        var alive = until > now;
        var renewed = until == DateTimeOffset.MinValue ? row.LastBeat : until - ReplicaTtl;
        var lastBeat = row.Connected && row.Beating ? (renewed < now ? renewed : now) : row.LastBeat;
        return new NodeLeases.Lease(row.Session, row.Connected && alive, lastBeat, row.Since);
    }

    private DateTimeOffset _nextRenewal = DateTimeOffset.MinValue;
    private DateTimeOffset _nextCleanup = DateTimeOffset.MinValue;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        _nextCleanup = time.GetUtcNow() + TimeSpan.FromMinutes(1);
        using var timer = new PeriodicTimer(FlushEvery, time);
        try
        {
            do
            {
                try
                {
                    await TickAsync(stoppingToken);
                }
                catch (Exception ex) when (ex is not OperationCanceledException)
                {
                    LogFailed(logger, ex);
                }
            }
            while (await timer.WaitForNextTickAsync(stoppingToken));
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
        finally
        {
            await StopCleanlyAsync();
        }
    }

    /// <summary>One turn: write what changed, and each <see cref="RenewEvery"/> renew this replica's lease and read the others'.</summary>
    internal async Task TickAsync(CancellationToken ct)
    {
        var now = time.GetUtcNow();
        var renew = now >= _nextRenewal;
        await FlushAsync(lookForQuiet: renew, ct);
        if (renew)
        {
            await store.AcquireLeaseAsync(ReplicaLeasePrefix + Replica, Replica, ReplicaTtl, ct);
            _nextRenewal = now + RenewEvery;
            await ReadOthersAsync(ct);
        }

        if (now >= _nextCleanup && leadership.IsLeader)
        {
            _nextCleanup = now + TimeSpan.FromMinutes(10);
            await store.DeleteLeasesAsync(ReplicaLeasePrefix, now - ForgetReplicasAfter, ct);
        }
    }

    /// <summary>
    /// Writes what changed about this replica's streams since the last flush: streams opened or
    /// closed at every flush, and with <paramref name="lookForQuiet"/> (at each renewal) nodes that
    /// went quiet or beat again, which takes a walk over every stream. Walking 10,000 streams at
    /// every flush was most of this class's CPU in an idle fleet (perf), for a state that other
    /// replicas read only once a renewal anyway.
    /// </summary>
    private async Task FlushAsync(bool lookForQuiet, CancellationToken ct)
    {
        var now = time.GetUtcNow();
        foreach (var node in local.TakeChanged())
        {
            _unwritten.Add(node);
        }

        foreach (var (node, lease) in lookForQuiet ? local.All : [])
        {
            // Ready as this replica derives it: connected with a heartbeat inside the node lease.
            var beating = lease.Connected && now - lease.LastHeartbeat <= options.NodeLease;
            if (!_written.TryGetValue(node, out var written) || written != (lease.SessionId, lease.Connected, beating))
            {
                _unwritten.Add(node);
            }
        }

        if (_unwritten.Count == 0)
        {
            return;
        }

        var batch = new List<NodePresence>(_unwritten.Count);
        foreach (var node in _unwritten)
        {
            if (local.Get(node) is { } lease)
            {
                var beating = lease.Connected && now - lease.LastHeartbeat <= options.NodeLease;
                batch.Add(new NodePresence(node, Replica, lease.SessionId, lease.Since, lease.Connected, beating, lease.LastHeartbeat));
            }
        }

        await store.SavePresenceAsync(batch, ct);
        foreach (var p in batch)
        {
            _written[p.Node] = (p.Session, p.Connected, p.Beating);
        }

        _unwritten.Clear();
    }

    private async Task ReadOthersAsync(CancellationToken ct)
    {
        var now = time.GetUtcNow();
        var replicas = await store.ListLeasesAsync(ReplicaLeasePrefix, ct);

        // With no other replica alive within a node lease (one server, or the others long dead),
        // every node another replica held derives Offline anyway: nothing to read.
        var recent = now - options.NodeLease - ReplicaTtl;
        if (!replicas.Any(r => r.Holder != Replica && r.ExpiresAt > recent))
        {
            _others = Snapshot.Empty;
            return;
        }

        var rows = await store.ListPresenceAsync(ct);
        _others = new Snapshot(
            rows.Where(r => r.Replica != Replica).ToDictionary(r => r.Node, StringComparer.Ordinal),
            replicas.ToDictionary(r => r.Holder, r => r.ExpiresAt, StringComparer.Ordinal));
    }

    /// <summary>
    /// A clean stop closes this replica's streams in the store and gives up its lease, so other
    /// replicas see its nodes leave at once rather than when the lease runs out.
    /// </summary>
    internal async Task StopCleanlyAsync()
    {
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(3));
        try
        {
            var now = time.GetUtcNow();
            var closed = local.All.Where(p => p.Value.Connected)
                .Select(p => new NodePresence(p.Key, Replica, p.Value.SessionId, p.Value.Since, Connected: false, Beating: false, p.Value.LastHeartbeat))
                .ToList();
            await store.SavePresenceAsync(closed, cts.Token);
            await store.ReleaseLeaseAsync(ReplicaLeasePrefix + Replica, Replica, cts.Token);
        }
        catch (Exception ex) when (ex is OperationCanceledException or StoreException or System.Data.Common.DbException or ObjectDisposedException)
        {
            LogStopFailed(logger, ex.Message);
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Could not share this replica's node streams through the store; retrying")]
    private static partial void LogFailed(ILogger logger, Exception exception);

    [LoggerMessage(Level = LogLevel.Information, Message = "Could not mark this replica's streams closed on stopping: {Reason}")]
    private static partial void LogStopFailed(ILogger logger, string reason);
}
