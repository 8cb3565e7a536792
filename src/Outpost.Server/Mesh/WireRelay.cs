using System.Collections.Concurrent;
using Grpc.Core;
using Microsoft.Extensions.Logging;
using Outpost.Protocol;

namespace Outpost.Server.Mesh;

/// <summary>
/// vWires from the server to targets on nodes, through each node's own outbound connection: the
/// server asks on the node's sync stream (OpenWire), the node answers with a Wire call carrying
/// the wire's id, and the two are matched here. A wire is one HTTP/2 stream of the node's
/// connection, so wires never queue behind each other or behind sync traffic.
/// </summary>
public sealed partial class WireRelay(TimeProvider time, ILogger<WireRelay> logger)
{
    /// <summary>How long a node has to answer an OpenWire with its Wire call.</summary>
    public static readonly TimeSpan AcceptTimeout = TimeSpan.FromSeconds(10);

    private readonly ConcurrentDictionary<string, Session> _sessions = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, Pending> _pending = new(StringComparer.Ordinal);
    private long _opened;
    private long _failed;
    private long _bytesToNodes;
    private long _bytesFromNodes;
    private int _open;

    private sealed record Session(long Id, Func<ServerMessage, CancellationToken, Task> Write);

    private sealed record Pending(string Node, string Target, TaskCompletionSource<WireStream> Accepted);

    public long Opened => Interlocked.Read(ref _opened);

    public long Failed => Interlocked.Read(ref _failed);

    public int Open => Volatile.Read(ref _open);

    public long BytesToNodes => Interlocked.Read(ref _bytesToNodes);

    public long BytesFromNodes => Interlocked.Read(ref _bytesFromNodes);

    /// <summary>How long a node that did not answer an OpenWire in time is picked last.</summary>
    public static readonly TimeSpan UnresponsiveFor = TimeSpan.FromSeconds(5);

    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, long> _unresponsive = new(StringComparer.Ordinal);

    /// <summary>True while the node lately failed to answer a wire in time: linked, but perhaps hung.</summary>
    public bool IsUnresponsive(string node) => _unresponsive.TryGetValue(node, out var until) && time.GetTimestamp() < until;

    /// <summary>True while the node has a sync stream here, so a wire to it can be asked for.</summary>
    public bool IsConnected(string node) => _sessions.ContainsKey(node);

    /// <summary>The node's sync stream, through which wires are asked for; detached when the stream ends.</summary>
    public IDisposable Attach(string node, long session, Func<ServerMessage, CancellationToken, Task> write)
    {
        _sessions[node] = new Session(session, write);
        return new Detach(() =>
        {
            // Unless a newer session of the node has replaced this one.
            if (_sessions.TryGetValue(node, out var current) && current.Id == session)
            {
                _sessions.TryRemove(KeyValuePair.Create(node, current));
            }
        });
    }

    /// <summary>
    /// Opens a wire to <paramref name="target"/> ("gateway" or "app/NAME") on the node. Throws
    /// <see cref="WireUnavailableException"/>, saying why, when the node is not connected or does not answer.
    /// </summary>
    public async Task<WireStream> OpenAsync(string node, string target, CancellationToken cancellationToken, string caller = "", string service = "", TimeSpan? acceptTimeout = null)
    {
        var wait = acceptTimeout ?? AcceptTimeout;
        if (!_sessions.TryGetValue(node, out var session))
        {
            Interlocked.Increment(ref _failed);
            throw new WireUnavailableException($"node '{node}' is not connected to this server");
        }

        var id = Guid.NewGuid().ToString("N");
        var pending = new Pending(node, target, new TaskCompletionSource<WireStream>(TaskCreationOptions.RunContinuationsAsynchronously));
        _pending[id] = pending;
        try
        {
            await session.Write(new ServerMessage { OpenWire = new OpenWire { Id = id, Target = target, Caller = caller, Service = service } }, cancellationToken);
            using var timeout = new CancellationTokenSource(wait, time);
            using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token);
            var wire = await pending.Accepted.Task.WaitAsync(linked.Token);
            Interlocked.Increment(ref _opened);
            _unresponsive.TryRemove(node, out _);
            return wire;
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            // Linked but not answering (hung, or its link half-open): passed over for a while.
            Interlocked.Increment(ref _failed);
            _unresponsive[node] = time.GetTimestamp() + (long)(UnresponsiveFor.TotalSeconds * time.TimestampFrequency);
            throw new WireUnavailableException($"node '{node}' did not open the wire within {wait.TotalMilliseconds:0} ms");
        }
        catch (Exception ex) when (ex is RpcException or InvalidOperationException or IOException)
        {
            Interlocked.Increment(ref _failed);
            throw new WireUnavailableException($"node '{node}' could not be asked for a wire: {ex.Message}");
        }
        finally
        {
            _pending.TryRemove(id, out _);
        }
    }

    /// <summary>
    /// A node's Wire call: matched to the OpenWire it answers (asked of this very node), handed to
    /// whoever opened it, and held until that side disposes it or the call ends.
    /// </summary>
    public async Task AcceptAsync(string node, IAsyncStreamReader<WireFrame> requests, IServerStreamWriter<WireFrame> responses, ServerCallContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var id = context.RequestHeaders.GetValue(WireStream.IdHeader) ?? "";
        if (!_pending.TryGetValue(id, out var pending) || pending.Node != node)
        {
            LogUnknownWire(logger, node, id);
            throw new RpcException(new Status(StatusCode.NotFound, $"no wire '{id}' was asked of node '{node}'"));
        }

        var wire = new WireStream(requests, responses);
        if (!pending.Accepted.TrySetResult(wire))
        {
            throw new RpcException(new Status(StatusCode.AlreadyExists, $"wire '{id}' is open already"));
        }

        Interlocked.Increment(ref _open);
        try
        {
            await wire.Completion.WaitAsync(context.CancellationToken);
        }
        catch (OperationCanceledException)
        {
            // The node went away; the opener sees its reads and writes fail.
        }
        finally
        {
            Interlocked.Decrement(ref _open);
            Interlocked.Add(ref _bytesToNodes, wire.BytesWritten);
            Interlocked.Add(ref _bytesFromNodes, wire.BytesRead);
        }
    }

    private sealed class Detach(Action action) : IDisposable
    {
        public void Dispose() => action();
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Node {Node} opened wire '{Id}', which was not asked of it: refused")]
    private static partial void LogUnknownWire(ILogger logger, string node, string id);
}

/// <summary>No wire could be opened to a node: not connected, or not answering.</summary>
public sealed class WireUnavailableException(string message) : Exception(message);
