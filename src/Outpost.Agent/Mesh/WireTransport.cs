using System.IO.Pipelines;
using System.Net;
using System.Threading.Channels;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Http.Features;

namespace Outpost.Agent.Mesh;

/// <summary>
/// Wires into the gateway's own Kestrel with no socket in between: a Kestrel transport whose
/// connections are wires handed over in process. A relayed wire to an app or to the gateway
/// thus costs no file descriptor and no copy through the kernel; Kestrel serves HTTP/1.1 on it
/// exactly as on a socket, and the app is told apart by the connection's items (as the mesh
/// socket's preamble does for connections that come through it).
/// </summary>
public sealed class WireTransport : IConnectionListenerFactory, IConnectionListenerFactorySelector
{
    /// <summary>The endpoint the gateway listens on for wires.</summary>
    public static readonly EndPoint EndPoint = new WireEndPoint();

    private readonly Channel<WireConnection> _incoming = Channel.CreateUnbounded<WireConnection>(new UnboundedChannelOptions { SingleReader = false, SingleWriter = false });
    private long _ids;

    public bool CanBind(EndPoint endpoint) => endpoint is WireEndPoint;

    public ValueTask<IConnectionListener> BindAsync(EndPoint endpoint, CancellationToken cancellationToken = default) =>
        ValueTask.FromResult<IConnectionListener>(new Listener(endpoint, _incoming.Reader));

    /// <summary>
    /// Serves HTTP on <paramref name="stream"/> for app <paramref name="app"/> (null: the gateway's
    /// own routes). Once Kestrel is done with the connection, <paramref name="shutdownWrite"/>
    /// half-closes the stream and <paramref name="drain"/> waits for the peer to end it (bytes it
    /// sends after that are dropped, as a closed socket's would be). Reading
    /// <paramref name="stream"/> is this connection's alone until then. Throws
    /// <see cref="InvalidOperationException"/> when the gateway takes no wires.
    /// </summary>
    public async Task ServeAsync(Stream stream, string? app, Func<Task> shutdownWrite, Func<CancellationToken, Task> drain, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(stream);
        ArgumentNullException.ThrowIfNull(shutdownWrite);
        ArgumentNullException.ThrowIfNull(drain);
        var connection = new WireConnection($"wire-{Interlocked.Increment(ref _ids)}", stream, cancellationToken);
        if (app is not null)
        {
            MeshListener.SetTargetApp(connection, app);
        }

        if (!_incoming.Writer.TryWrite(connection))
        {
            throw new InvalidOperationException("the gateway takes no wires: it is stopping");
        }

        try
        {
            await connection.Done.WaitAsync(cancellationToken);
            await shutdownWrite();
            using var linger = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            linger.CancelAfter(TimeSpan.FromSeconds(30));
            // The pump stops at the peer's end of stream, or at once if the connection was aborted.
            await connection.Pumped.WaitAsync(linger.Token);
            await drain(linger.Token);
        }
        finally
        {
            if (connection.Pumped.IsCompleted)
            {
                connection.Release();
            }
        }
    }

    /// <summary>Stops handing connections to Kestrel (the gateway stops).</summary>
    public void Complete() => _incoming.Writer.TryComplete();

    private sealed class WireEndPoint : EndPoint
    {
        public override string ToString() => "wires";
    }

    private sealed class Listener(EndPoint endpoint, ChannelReader<WireConnection> incoming) : IConnectionListener
    {
        private readonly CancellationTokenSource _unbound = new();

        public EndPoint EndPoint => endpoint;

        public async ValueTask<ConnectionContext?> AcceptAsync(CancellationToken cancellationToken = default)
        {
            using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _unbound.Token);
            try
            {
                while (await incoming.WaitToReadAsync(linked.Token))
                {
                    if (incoming.TryRead(out var connection))
                    {
                        connection.Start();
                        return connection;
                    }
                }
            }
            catch (OperationCanceledException) when (_unbound.IsCancellationRequested)
            {
                // Unbound: Kestrel stops accepting.
            }

            return null;
        }

        public ValueTask UnbindAsync(CancellationToken cancellationToken = default)
        {
            _unbound.Cancel();
            return ValueTask.CompletedTask;
        }

        public ValueTask DisposeAsync()
        {
            _unbound.Cancel();
            _unbound.Dispose();
            return ValueTask.CompletedTask;
        }
    }

    /// <summary>
    /// A wire as Kestrel sees a connection: what the wire brings is pumped into the input pipe (so
    /// the pump is its only reader), and Kestrel's output goes straight to the wire.
    /// </summary>
    private sealed class WireConnection : ConnectionContext, IConnectionIdFeature, IConnectionItemsFeature, IConnectionTransportFeature, IConnectionLifetimeFeature
    {
        private readonly Stream _stream;
        private readonly Pipe _input = new(new PipeOptions(pauseWriterThreshold: 1024 * 1024, resumeWriterThreshold: 512 * 1024, useSynchronizationContext: false));
        private readonly CancellationTokenSource _closed;
        private readonly TaskCompletionSource _done = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly FeatureCollection _features = new();
        private Task _pump = Task.CompletedTask;

        public WireConnection(string id, Stream stream, CancellationToken cancellationToken)
        {
            ConnectionId = id;
            _stream = stream;
            _closed = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            Transport = new DuplexPipe(_input.Reader, PipeWriter.Create(stream, new StreamPipeWriterOptions(leaveOpen: true)));
            _features.Set<IConnectionIdFeature>(this);
            _features.Set<IConnectionItemsFeature>(this);
            _features.Set<IConnectionTransportFeature>(this);
            _features.Set<IConnectionLifetimeFeature>(this);
        }

        /// <summary>Completes once Kestrel has disposed the connection.</summary>
        public Task Done => _done.Task;

        /// <summary>Completes once nothing reads the stream any more.</summary>
        public Task Pumped => _pump;

        public override string ConnectionId { get; set; }

        public override IFeatureCollection Features => _features;

        public override IDictionary<object, object?> Items { get; set; } = new Dictionary<object, object?>();

        public override IDuplexPipe Transport { get; set; }

        public override CancellationToken ConnectionClosed
        {
            get => _closed.Token;
            set => throw new NotSupportedException();
        }

        public void Start() => _pump = PumpAsync();

        /// <summary>Copies what the wire brings into the input pipe until the wire ends (Kestrel then sees the client close).</summary>
        private async Task PumpAsync()
        {
            var writer = _input.Writer;
            Exception? failure = null;
            try
            {
                while (true)
                {
                    var memory = writer.GetMemory(Core.Net.Pump.ChunkBytes);
                    var read = await _stream.ReadAsync(memory, _closed.Token);
                    if (read == 0)
                    {
                        break;
                    }

                    writer.Advance(read);
                    var flushed = await writer.FlushAsync(_closed.Token);
                    if (flushed.IsCompleted || flushed.IsCanceled)
                    {
                        break;
                    }
                }
            }
            catch (Exception ex) when (ex is IOException or OperationCanceledException or ObjectDisposedException or InvalidOperationException or Grpc.Core.RpcException)
            {
                failure = new ConnectionAbortedException("the wire ended", ex);
            }

            await writer.CompleteAsync(failure);
        }

        /// <summary>Frees what the connection holds, once nothing uses it any more.</summary>
        public void Release() => _closed.Dispose();

        public override void Abort(ConnectionAbortedException abortReason)
        {
            try
            {
                _closed.Cancel();
            }
            catch (ObjectDisposedException)
            {
                // Disposed already.
            }
        }

        public override async ValueTask DisposeAsync()
        {
            // Kestrel's last bytes go out; the input pipe's reader is done, so the pump stops at
            // its next flush (or at the wire's end, whichever comes first).
            await Transport.Output.CompleteAsync();
            await _input.Reader.CompleteAsync();
            _done.TrySetResult();
            await base.DisposeAsync();
        }

        private sealed record DuplexPipe(PipeReader Input, PipeWriter Output) : IDuplexPipe;
    }
}
