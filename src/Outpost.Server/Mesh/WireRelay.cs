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

    private sealed class Session(long id, Func<ServerMessage, CancellationToken, Task> write)
    {
        public long Id => id;

        public Func<ServerMessage, CancellationToken, Task> Write => write;

        /// <summary>The last probe sent on this session.</summary>
        public long Sent;

        /// <summary>When the oldest probe still unanswered was sent (a timestamp); 0 when all are answered.</summary>
        public long WaitingSince;

        /// <summary>1 while a probe is being written: the next waits (a backed-up stream takes no pile of them).</summary>
        public int Writing;

        /// <summary>1 once a probe went unanswered past the timeout, until the node answers again.</summary>
        public int Silent;
    }

    private sealed record Pending(string Node, string Target, TaskCompletionSource<WireStream> Accepted);

    public long Opened => Interlocked.Read(ref _opened);

    public long Failed => Interlocked.Read(ref _failed);

    public int Open => Volatile.Read(ref _open);

    public long BytesToNodes => Interlocked.Read(ref _bytesToNodes);

    public long BytesFromNodes => Interlocked.Read(ref _bytesFromNodes);

    /// <summary>How long a node that did not answer an OpenWire in time is picked last.</summary>
    public static readonly TimeSpan UnresponsiveFor = TimeSpan.FromSeconds(5);

    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, long> _unresponsive = new(StringComparer.Ordinal);

    /// <summary>How often a node serving mesh endpoints is probed on its sync stream (NSM probes a wire every 200 ms).</summary>
    public static readonly TimeSpan ProbeInterval = TimeSpan.FromMilliseconds(250);

    /// <summary>How long a probe may go unanswered before the node is picked last.</summary>
    public static readonly TimeSpan ProbeTimeout = TimeSpan.FromMilliseconds(750);

    private long _probesSent;
    private long _probesMissed;

    public long ProbesSent => Interlocked.Read(ref _probesSent);

    /// <summary>Times a node went from answering its probes to leaving one unanswered past <see cref="ProbeTimeout"/> (seen when the next is sent).</summary>
    public long ProbesMissed => Interlocked.Read(ref _probesMissed);

    /// <summary>
    /// True while the node is linked but seems hung: it lately failed to answer a wire in time, or
    /// leaves a probe unanswered past <see cref="ProbeTimeout"/>. Such a node is picked last.
    /// </summary>
    public bool IsUnresponsive(string node)
    {
        var now = time.GetTimestamp();
        if (_unresponsive.TryGetValue(node, out var until) && now < until)
        {
            return true;
        }

        return _sessions.TryGetValue(node, out var session) && Volatile.Read(ref session.WaitingSince) is var since and not 0
            && time.GetElapsedTime(since, now) > ProbeTimeout;
    }

    /// <summary>
    /// Sends the node a probe, unless the last one is still being written. The node echoes it
    /// (<see cref="Answered"/>); the first that goes unanswered starts the clock of <see cref="IsUnresponsive"/>.
    /// </summary>
    public void Probe(string node, CancellationToken cancellationToken)
    {
        if (!_sessions.TryGetValue(node, out var session) || Interlocked.CompareExchange(ref session.Writing, 1, 0) != 0)
        {
            return;
        }

        var since = Interlocked.CompareExchange(ref session.WaitingSince, time.GetTimestamp(), 0);
        if (since != 0 && time.GetElapsedTime(since) > ProbeTimeout && Interlocked.Exchange(ref session.Silent, 1) == 0)
        {
            Interlocked.Increment(ref _probesMissed);
            LogSilent(logger, node, (long)time.GetElapsedTime(since).TotalMilliseconds);
        }

        var probe = new ServerMessage { Probe = new Protocol.Probe { Sequence = Interlocked.Increment(ref session.Sent) } };
        Interlocked.Increment(ref _probesSent);
        _ = WriteAsync();

        async Task WriteAsync()
        {
            try
            {
                await session.Write(probe, cancellationToken);
            }
            catch (Exception ex) when (ex is OperationCanceledException or RpcException or IOException or InvalidOperationException or ObjectDisposedException)
            {
                // The session is ending.
            }
            finally
            {
                Volatile.Write(ref session.Writing, 0);
            }
        }
    }

    /// <summary>Node <paramref name="node"/> echoed probe <paramref name="sequence"/> on session <paramref name="sessionId"/>.</summary>
    public void Answered(string node, long sessionId, long sequence)
    {
        if (!_sessions.TryGetValue(node, out var session) || session.Id != sessionId)
        {
            return;
        }

        if (sequence >= Interlocked.Read(ref session.Sent))
        {
            Volatile.Write(ref session.WaitingSince, 0);
            if (Interlocked.Exchange(ref session.Silent, 0) == 1)
            {
                LogAnswering(logger, node);
            }
        }
        else
        {
            // Newer probes are out: wait for them from now.
            Volatile.Write(ref session.WaitingSince, time.GetTimestamp());
        }

        _unresponsive.TryRemove(node, out _);
    }

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

    [LoggerMessage(Level = LogLevel.Warning, Message = "Node {Node} has not answered a probe for {Milliseconds} ms: picked last for new wires until it does")]
    private static partial void LogSilent(ILogger logger, string node, long milliseconds);

    [LoggerMessage(Level = LogLevel.Information, Message = "Node {Node} answers its probes again")]
    private static partial void LogAnswering(ILogger logger, string node);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Node {Node} opened wire '{Id}', which was not asked of it: refused")]
    private static partial void LogUnknownWire(ILogger logger, string node, string id);
}

/// <summary>No wire could be opened to a node: not connected, or not answering.</summary>
public sealed class WireUnavailableException(string message) : Exception(message);
