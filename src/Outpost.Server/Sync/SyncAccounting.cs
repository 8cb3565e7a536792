using System.Collections.Concurrent;
using System.Text.Json.Nodes;

namespace Outpost.Server.Sync;

/// <summary>
/// Bytes and messages on each node's sync stream, per message kind and direction, since the
/// server started. Sizes are the protobuf messages; gRPC and HTTP/2 framing add ~14 bytes each.
/// </summary>
/// <remarks>
/// Kept for every node the server has seen, so kept small: each direction and kind gets a slot
/// once for the whole server, and a node's counters are one array indexed by slot (~0.4 KB a
/// node, where a dictionary of counter objects per node took ~1.2 KB).
/// </remarks>
public sealed class SyncAccounting
{
    /// <summary>Slots for every direction and kind there can be: the sync protocol's message kinds in both directions, and then some.</summary>
    private const int Slots = 24;

    // "sent:KIND" and "received:KIND" → slot, and slot → (direction, kind); slots are only ever added.
    private static readonly ConcurrentDictionary<(string Direction, string Kind), int> SlotOf = new();
    private static readonly (string Direction, string Kind)[] SlotNames = new (string, string)[Slots];
    private static readonly Lock SlotLock = new();
    private static int _slotsUsed;

    // Per node, messages at 2·slot and bytes at 2·slot + 1.
    private readonly ConcurrentDictionary<string, long[]> _nodes = new(StringComparer.Ordinal);

    public void Sent(string node, string kind, int bytes) => Add(node, Slot("sent", kind), bytes);

    public void Received(string node, string kind, int bytes) => Add(node, Slot("received", kind), bytes);

    private static int Slot(string direction, string kind)
    {
        if (SlotOf.TryGetValue((direction, kind), out var slot))
        {
            return slot;
        }

        lock (SlotLock)
        {
            if (SlotOf.TryGetValue((direction, kind), out slot))
            {
                return slot;
            }

            if (_slotsUsed == Slots)
            {
                throw new InvalidOperationException($"sync accounting has no slot left for {direction} '{kind}': raise {nameof(Slots)}");
            }

            slot = _slotsUsed;
            SlotNames[slot] = (direction, kind);
            Volatile.Write(ref _slotsUsed, slot + 1); // the name first: a reader that sees the slot sees its name
            SlotOf[(direction, kind)] = slot;
            return slot;
        }
    }

    private void Add(string node, int slot, int bytes)
    {
        var counters = _nodes.GetOrAdd(node, static _ => new long[2 * Slots]);
        Interlocked.Increment(ref counters[2 * slot]);
        Interlocked.Add(ref counters[(2 * slot) + 1], bytes);
    }

    /// <summary>The kinds a node has counted, each with its direction, messages and bytes, in slot order.</summary>
    private static IEnumerable<(string Direction, string Kind, long Messages, long Bytes)> Counted(long[] counters)
    {
        var used = Volatile.Read(ref _slotsUsed);
        for (var slot = 0; slot < used; slot++)
        {
            var messages = Interlocked.Read(ref counters[2 * slot]);
            if (messages > 0)
            {
                var (direction, kind) = SlotNames[slot];
                yield return (direction, kind, messages, Interlocked.Read(ref counters[(2 * slot) + 1]));
            }
        }
    }

    /// <summary>Bytes sent to a node for one message kind (tests and benchmarks read it).</summary>
    public long SentBytes(string node, string kind) =>
        _nodes.TryGetValue(node, out var counters) && SlotOf.TryGetValue(("sent", kind), out var slot) ? Interlocked.Read(ref counters[(2 * slot) + 1]) : 0;

    /// <summary>{"sent": {"config-delta": {"messages": 3, "bytes": 912}, ...}, "received": {...}}</summary>
    public JsonObject? ToJson(string node)
    {
        if (!_nodes.TryGetValue(node, out var counters))
        {
            return null;
        }

        var sent = new JsonObject();
        var received = new JsonObject();
        foreach (var (direction, kind, messages, bytes) in Counted(counters).OrderBy(c => c.Kind, StringComparer.Ordinal))
        {
            (direction == "sent" ? sent : received)[kind] = new JsonObject
            {
                ["messages"] = messages,
                ["bytes"] = bytes,
            };
        }

        return new JsonObject { ["sent"] = sent, ["received"] = received };
    }

    /// <summary>Every counter: node, direction (sent or received), message kind, messages, bytes.</summary>
    public IReadOnlyList<(string Node, string Direction, string Kind, long Messages, long Bytes)> Snapshot() =>
        [.. _nodes.SelectMany(n => Counted(n.Value).Select(c => (n.Key, c.Direction, c.Kind, c.Messages, c.Bytes)))
            .OrderBy(r => r.Key, StringComparer.Ordinal).ThenBy(r => r.Direction, StringComparer.Ordinal).ThenBy(r => r.Kind, StringComparer.Ordinal)];

    public void Forget(string node) => _nodes.TryRemove(node, out _);
}
