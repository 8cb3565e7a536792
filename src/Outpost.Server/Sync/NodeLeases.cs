using System.Collections.Concurrent;

namespace Outpost.Server.Sync;

/// <summary>Which nodes hold an open sync stream right now, and when each last beat.</summary>
public sealed class NodeLeases(TimeProvider time)
{
    private readonly ConcurrentDictionary<string, Lease> _leases = new(StringComparer.Ordinal);

    public sealed record Lease(long SessionId, bool Connected, DateTimeOffset LastHeartbeat);

    private long _nextSession;

    public long Connect(string node)
    {
        var session = Interlocked.Increment(ref _nextSession);
        _leases[node] = new Lease(session, true, time.GetUtcNow());
        return session;
    }

    public void Beat(string node, long session) =>
        _leases.AddOrUpdate(node, _ => new Lease(session, true, time.GetUtcNow()),
            (_, old) => old.SessionId == session ? old with { LastHeartbeat = time.GetUtcNow() } : old);

    /// <summary>Marks the stream closed, unless a newer session for the node has replaced it.</summary>
    public void Disconnect(string node, long session) =>
        _leases.AddOrUpdate(node, _ => new Lease(session, false, time.GetUtcNow()),
            (_, old) => old.SessionId == session ? old with { Connected = false } : old);

    public Lease? Get(string node) => _leases.TryGetValue(node, out var lease) ? lease : null;

    public void Forget(string node) => _leases.TryRemove(node, out _);
}
