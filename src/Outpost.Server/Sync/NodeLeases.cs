using System.Collections.Concurrent;

namespace Outpost.Server.Sync;

/// <summary>
/// Which nodes hold an open sync stream to this server right now, and when each last beat.
/// Streams to other replicas are <see cref="FleetPresence"/>'s to know; it also carries the
/// changes noted here (<see cref="TakeChanged"/>) to the store for them.
/// </summary>
public sealed class NodeLeases(TimeProvider time)
{
    private readonly ConcurrentDictionary<string, Lease> _leases = new(StringComparer.Ordinal);
    private readonly ConcurrentQueue<string> _changed = new();

    /// <summary>A stream: its session, whether it is open, its last heartbeat, and when it opened.</summary>
    public sealed record Lease(long SessionId, bool Connected, DateTimeOffset LastHeartbeat, DateTimeOffset Since);

    private long _nextSession;

    private TaskCompletionSource _streams = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>
    /// Completes when a stream next opens or closes: a watch of nodes shows a node NotReady the
    /// moment its stream drops, not at its next look. Take it before looking, then wait on it.
    /// </summary>
    public Task StreamChanged => Volatile.Read(ref _streams).Task;

    private void Signal() =>
        Interlocked.Exchange(ref _streams, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).TrySetResult();

    public long Connect(string node)
    {
        var session = Interlocked.Increment(ref _nextSession);
        var now = time.GetUtcNow();
        _leases[node] = new Lease(session, true, now, now);
        _changed.Enqueue(node);
        Signal();
        return session;
    }

    public void Beat(string node, long session) =>
        _leases.AddOrUpdate(node, _ => new Lease(session, true, time.GetUtcNow(), time.GetUtcNow()),
            (_, old) => old.SessionId == session ? old with { LastHeartbeat = time.GetUtcNow() } : old);

    /// <summary>Marks the stream closed, unless a newer session for the node has replaced it.</summary>
    public void Disconnect(string node, long session)
    {
        _leases.AddOrUpdate(node, _ => new Lease(session, false, time.GetUtcNow(), time.GetUtcNow()),
            (_, old) => old.SessionId == session ? old with { Connected = false } : old);
        _changed.Enqueue(node);
        Signal();
    }

    public Lease? Get(string node) => _leases.TryGetValue(node, out var lease) ? lease : null;

    public void Forget(string node) => _leases.TryRemove(node, out _);

    /// <summary>Every node this server has held a stream of since it started (or since it was forgotten).</summary>
    public IEnumerable<KeyValuePair<string, Lease>> All => _leases;

    /// <summary>The nodes whose stream opened or closed since the last call (a node may come more than once).</summary>
    public List<string> TakeChanged()
    {
        var nodes = new List<string>();
        while (_changed.TryDequeue(out var node))
        {
            nodes.Add(node);
        }

        return nodes;
    }
}
