using System.Collections.Concurrent;
using System.Text.Json.Nodes;

namespace Outpost.Server.Sync;

/// <summary>
/// Bytes and messages on each node's sync stream, per message kind and direction, since the
/// server started. Sizes are the protobuf messages; gRPC and HTTP/2 framing add ~14 bytes each.
/// </summary>
public sealed class SyncAccounting
{
    private readonly ConcurrentDictionary<string, ConcurrentDictionary<string, Counter>> _nodes = new(StringComparer.Ordinal);

    private sealed class Counter
    {
        public long Messages;
        public long Bytes;
    }

    public void Sent(string node, string kind, int bytes) => Add(node, Keys.GetOrAdd(("sent:", kind), k => k.Direction + k.Kind), bytes);

    // "sent:KIND" and "received:KIND", made once per kind rather than once per message.
    private static readonly ConcurrentDictionary<(string Direction, string Kind), string> Keys = new();

    public void Received(string node, string kind, int bytes) => Add(node, Keys.GetOrAdd(("received:", kind), k => k.Direction + k.Kind), bytes);

    private void Add(string node, string key, int bytes)
    {
        var counter = _nodes.GetOrAdd(node, _ => new(StringComparer.Ordinal)).GetOrAdd(key, _ => new Counter());
        Interlocked.Increment(ref counter.Messages);
        Interlocked.Add(ref counter.Bytes, bytes);
    }

    /// <summary>Bytes sent to a node for one message kind (tests and benchmarks read it).</summary>
    public long SentBytes(string node, string kind) =>
        _nodes.TryGetValue(node, out var counters) && counters.TryGetValue("sent:" + kind, out var c) ? Interlocked.Read(ref c.Bytes) : 0;

    /// <summary>{"sent": {"config-delta": {"messages": 3, "bytes": 912}, ...}, "received": {...}}</summary>
    public JsonObject? ToJson(string node)
    {
        if (!_nodes.TryGetValue(node, out var counters))
        {
            return null;
        }

        var sent = new JsonObject();
        var received = new JsonObject();
        // A snapshot first: sorting the dictionary itself copies it through ICollection.CopyTo,
        // which throws when a stream adds a counter between its count and its copy.
        foreach (var (key, counter) in counters.ToArray().OrderBy(p => p.Key, StringComparer.Ordinal))
        {
            var colon = key.IndexOf(':', StringComparison.Ordinal);
            (key[..colon] == "sent" ? sent : received)[key[(colon + 1)..]] = new JsonObject
            {
                ["messages"] = Interlocked.Read(ref counter.Messages),
                ["bytes"] = Interlocked.Read(ref counter.Bytes),
            };
        }

        return new JsonObject { ["sent"] = sent, ["received"] = received };
    }

    /// <summary>Every counter: node, direction (sent or received), message kind, messages, bytes.</summary>
    public IReadOnlyList<(string Node, string Direction, string Kind, long Messages, long Bytes)> Snapshot() =>
        [.. _nodes.SelectMany(n => n.Value.Select(c =>
            {
                var colon = c.Key.IndexOf(':', StringComparison.Ordinal);
                return (n.Key, c.Key[..colon], c.Key[(colon + 1)..], Interlocked.Read(ref c.Value.Messages), Interlocked.Read(ref c.Value.Bytes));
            }))
            .OrderBy(r => r.Item1, StringComparer.Ordinal).ThenBy(r => r.Item2, StringComparer.Ordinal).ThenBy(r => r.Item3, StringComparer.Ordinal)];

    public void Forget(string node) => _nodes.TryRemove(node, out _);
}
