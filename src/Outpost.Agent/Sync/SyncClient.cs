using Google.Protobuf;
using System.Net;
using System.Text.Json.Nodes;
using System.Threading.Channels;
using Grpc.Core;
using Grpc.Net.Client;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Outpost.Agent.Apps;
using Outpost.Agent.Hosting;
using Outpost.Agent.State;
using Outpost.Core.Resources;
using Outpost.Protocol;

namespace Outpost.Agent.Sync;

/// <summary>
/// Keeps the node in sync with the control plane: joins once, then holds one sync stream,
/// applying each config update durably before acking it, and reconnects forever with
/// jittered backoff. Only a refused join is fatal.
/// </summary>
public sealed partial class SyncClient(
    AgentOptions options,
    AgentStore store,
    LocalDataStore data,
    ModuleCache modules,
    AppRegistry apps,
    Host.AgentHostServices services,
    GatewayInfo gateway,
    ServerTrust trust,
    NodeCredentials credentials,
    Core.Security.SecretBox secretBox,
    AgentLifetime lifetime,
    Monitoring.NodeUsageProbe usage,
    Monitoring.LogRing logRing,
    Mesh.NodeWires wires,
    Mesh.MeshClient mesh,
    Mesh.MeshPeers peers,
    TimeProvider time,
    ILogger<SyncClient> logger,
    Apps.AgentRuntimes? runtimes = null) : BackgroundService
{
    private readonly OutageLog _outage = new(time);
    private readonly Channel<bool> _statusChanged = Channel.CreateBounded<bool>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite });
    private readonly Channel<bool> _appended = Channel.CreateBounded<bool>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite });
    private readonly Channel<bool> _kvPending = Channel.CreateBounded<bool>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite });
    private readonly Channel<bool> _logged = Channel.CreateBounded<bool>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite });

    /// <summary>Most log lines in one batch, and roughly the most bytes.</summary>
    private const int LogBatchLines = 2000;
    private const long LogBatchBytes = 256 * 1024;

    /// <summary>Most bucket writes in one KvBatch.</summary>
    private const int KvBatchWrites = 1000;

    /// <summary>Most records in one batch.</summary>
    private const int BatchRecords = 4096;

    /// <summary>Roughly the most payload bytes in one batch, before compression.</summary>
    private const long BatchBytes = 2 * 1024 * 1024;

    /// <summary>How long to wait for a batch's ack before treating the link as dead.</summary>
    private static readonly TimeSpan AckTimeout = TimeSpan.FromSeconds(30);

    private int _server;

    /// <summary>The replica this agent dials now: the first of --server's URLs, then the next after each failure.</summary>
    public string ServerUrl => options.ServerUrls[_server];

    /// <summary>True while a sync stream is open and has delivered its first update.</summary>
    public bool Connected { get; private set; }

    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, long[]> _counters = new(StringComparer.Ordinal);

    /// <summary>Messages and bytes this agent sent and received on the sync stream, per kind, since it started.</summary>
    public IReadOnlyDictionary<string, (long Messages, long Bytes)> Counters =>
        _counters.ToDictionary(p => p.Key, p => (Interlocked.Read(ref p.Value[0]), Interlocked.Read(ref p.Value[1])), StringComparer.Ordinal);

    private void Count(string key, int bytes)
    {
        var counter = _counters.GetOrAdd(key, _ => new long[2]);
        Interlocked.Increment(ref counter[0]);
        Interlocked.Add(ref counter[1], bytes);
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        apps.StatusChanged += OnStatusChanged;
        data.Appended += OnAppended;
        data.KvPending += OnKvPending;
        logRing.Appended += OnLogged;
        var backoff = new Backoff(options.InitialBackoff, options.MaxBackoff);
        try
        {
            while (!stoppingToken.IsCancellationRequested)
            {
                try
                {
                    var bundle = await trust.EnsureAsync(ServerUrl, stoppingToken);
                    var identity = await EnsureJoinedAsync(bundle, stoppingToken);
                    using var channel = CreateChannel(bundle, presentCertificate: true);
                    var client = new EdgeSync.EdgeSyncClient(channel);
                    await RunSessionAsync(client, identity, bundle is not null, backoff, stoppingToken);
                }
                catch (FatalAgentException ex)
                {
                    lifetime.Fail(ex.Message);
                    return;
                }
                catch (RpcException ex) when (ex.StatusCode is StatusCode.Unauthenticated or StatusCode.PermissionDenied && !stoppingToken.IsCancellationRequested)
                {
                    // The server refuses this node's credential: it was deleted from the fleet (its
                    // certificate revoked). It does not join again on its own; an operator restarts
                    // it with a join token to bring it back.
                    LogCredentialRefused(logger, ex.Status.Detail);
                    store.ClearIdentity();
                    credentials.Clear();
                    lifetime.Fail($"the server refused node '{options.NodeName}': {ex.Status.Detail}. The node stops syncing; restart the agent with a join token to join again");
                    return;
                }
                catch (Exception ex) when (!stoppingToken.IsCancellationRequested)
                {
                    // The next attempt goes to the next replica, if there are others: this one may be gone.
                    _server = (_server + 1) % options.ServerUrls.Count;
                    var (report, attempts, lasted) = _outage.Failed();
                    var reason = Describe(ex);
                    switch (report)
                    {
                        case OutageReport.Warning:
                            LogDisconnected(logger, reason);
                            break;
                        case OutageReport.Summary:
                            LogStillDisconnected(logger, attempts, (long)lasted.TotalSeconds, reason);
                            break;
                        default:
                            LogDisconnectedAgain(logger, reason);
                            break;
                    }
                }
                finally
                {
                    Connected = false;
                }

                var delay = backoff.Next();
                LogRetrying(logger, (long)delay.TotalMilliseconds);
                await Task.Delay(delay, time, stoppingToken);
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
        catch (RpcException ex) when (ex.StatusCode == StatusCode.Cancelled && stoppingToken.IsCancellationRequested)
        {
            // The agent is stopping: its own cancellation ended the stream, which is no failure.
        }
        finally
        {
            apps.StatusChanged -= OnStatusChanged;
            data.Appended -= OnAppended;
            data.KvPending -= OnKvPending;
            logRing.Appended -= OnLogged;
        }
    }

    private void OnLogged() => _logged.Writer.TryWrite(true);

    private void OnKvPending() => _kvPending.Writer.TryWrite(true);

    private void OnStatusChanged() => _statusChanged.Writer.TryWrite(true);

    private void OnAppended() => _appended.Writer.TryWrite(true);

    /// <summary>
    /// One HTTP/2 connection to the server. Over TLS the server must prove the pinned CA; with
    /// <paramref name="presentCertificate"/> the node presents its own certificate (mutual TLS),
    /// picked at each handshake so a renewed one takes over on the next connection.
    /// </summary>
    private GrpcChannel CreateChannel(Core.Security.TrustBundle? bundle, bool presentCertificate) => GrpcChannel.ForAddress(ServerUrl, new GrpcChannelOptions
    {
        HttpHandler = new SocketsHttpHandler
        {
            SslOptions = bundle is null ? new System.Net.Security.SslClientAuthenticationOptions() : new System.Net.Security.SslClientAuthenticationOptions
            {
                // One chain built, against the pinned CA alone; the callback takes its result.
                CertificateChainPolicy = bundle.ChainPolicy(Core.Security.TrustBundle.ServerAuthOid),
                RemoteCertificateValidationCallback = bundle.ServerValidator(reason => LogServerRejected(logger, reason)),
                LocalCertificateSelectionCallback = presentCertificate ? (_, _, _, _, _) => credentials.Current! : null,
            },
            // TCP has TcpConnectTimeout (ConnectAsync); this bounds the TLS handshake after it too.
            ConnectTimeout = HandshakeTimeout,
            ConnectCallback = ConnectAsync,
            // Pings find a hung server (its kernel still acknowledging) on an otherwise idle stream.
            KeepAlivePingDelay = options.KeepAlive,
            KeepAlivePingTimeout = options.KeepAlivePingTimeout,
            KeepAlivePingPolicy = HttpKeepAlivePingPolicy.Always,
            PooledConnectionIdleTimeout = Timeout.InfiniteTimeSpan,
            EnableMultipleHttp2Connections = false,
            // The default stream window (64 KiB, grown as throughput asks): what a cut link loses of a
            // module download, buffered here but not yet written, stays small.
        },
        MaxReceiveMessageSize = 16 * 1024 * 1024,
        // The channel owns the handler: without this, disposing the channel (after the join, and at
        // every reconnect) left its connection to the server open, pinged and never reused.
        DisposeHttpClient = true,
    });

    /// <summary>How long the TCP connect to a replica may take: a dead host is left for the next replica soon.</summary>
    public static readonly TimeSpan TcpConnectTimeout = TimeSpan.FromSeconds(5);

    /// <summary>
    /// How long connecting may take, TLS handshake included. A server taking back a whole fleet at
    /// once (a reconnect storm) queues handshakes: one abandoned is work thrown away on both sides
    /// and another handshake queued, so the wait is long; the server's own is longer still. A dead
    /// host is found by <see cref="TcpConnectTimeout"/>, a dead process by its refused connect: only
    /// a server that took the connection and is busy is waited for this long. At 30 s, a
    /// 10,000-node storm on a two-core server (about a minute's work) saw 350-3,450 handshakes
    /// given up and begun again.
    /// </summary>
    public static readonly TimeSpan HandshakeTimeout = TimeSpan.FromSeconds(60);

    /// <summary>How long bytes the agent sent may stay unacknowledged before the kernel drops the link (TCP_USER_TIMEOUT).</summary>
    public static readonly TimeSpan UnacknowledgedTimeout = TimeSpan.FromSeconds(35);

    /// <summary>
    /// The TCP connection to the server, with TCP_USER_TIMEOUT set: a heartbeat (every 10 s) the
    /// server's side never acknowledges ends a dead link within 45 s, with no bytes spent on
    /// pings to find out.
    /// </summary>
    public static async ValueTask<Stream> ConnectAsync(SocketsHttpConnectionContext context, CancellationToken cancellationToken)
    {
        var socket = new System.Net.Sockets.Socket(System.Net.Sockets.SocketType.Stream, System.Net.Sockets.ProtocolType.Tcp) { NoDelay = true };
        try
        {
            if (OperatingSystem.IsLinux())
            {
                const int IpProtoTcp = 6, TcpUserTimeout = 18;
                socket.SetRawSocketOption(IpProtoTcp, TcpUserTimeout, BitConverter.GetBytes((int)UnacknowledgedTimeout.TotalMilliseconds));
            }

            using var connect = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            connect.CancelAfter(TcpConnectTimeout);
            // Through SocketAsyncEventArgs rather than Socket.ConnectAsync(EndPoint): that one renders
            // its exception's stack trace to a string when a connect fails, and the first such
            // rendering in a NativeAOT process builds the whole binary's method-name map — while a
            // node whose server is down is starting to serve from local state.
            using var args = new System.Net.Sockets.SocketAsyncEventArgs { RemoteEndPoint = context.DnsEndPoint };
            var completed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            args.Completed += (_, _) => completed.TrySetResult();
            if (socket.ConnectAsync(args))
            {
                using (connect.Token.UnsafeRegister(static state => System.Net.Sockets.Socket.CancelConnectAsync((System.Net.Sockets.SocketAsyncEventArgs)state!), args))
                {
                    await completed.Task;
                }
            }

            if (args.SocketError != System.Net.Sockets.SocketError.Success)
            {
                cancellationToken.ThrowIfCancellationRequested();
                connect.Token.ThrowIfCancellationRequested();
                throw new System.Net.Sockets.SocketException((int)args.SocketError);
            }

            return new System.Net.Sockets.NetworkStream(socket, ownsSocket: true);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The node's identity, joining first if it has none: with a join token, over a channel that
    /// verifies the server, sending a CSR for a key pair made here (TLS) and keeping the
    /// certificate that comes back.
    /// </summary>
    private async Task<NodeIdentity> EnsureJoinedAsync(Core.Security.TrustBundle? bundle, CancellationToken ct)
    {
        // The credential belongs to the node, not to a URL: the control plane may move.
        var identity = store.LoadIdentity();
        var certificate = bundle is null ? null : credentials.Current;
        var expired = certificate is not null && certificate.NotAfter.ToUniversalTime() <= time.GetUtcNow().UtcDateTime;
        if (identity is not null && identity.NodeName == options.NodeName && (bundle is null ? identity.NodeToken.Length > 0 : certificate is not null && !expired))
        {
            return identity;
        }

        if (string.IsNullOrWhiteSpace(options.JoinToken))
        {
            throw new FatalAgentException(expired
                ? $"this node's certificate expired on {certificate!.NotAfter.ToUniversalTime():u} while it could not reach the server: restart the agent with a join token (--token) to join again"
                : "this node has not joined yet: pass a join token with --token (or OUTPOST_TOKEN); create one with `outpost token create`");
        }

        if (expired)
        {
            LogCertificateExpired(logger, certificate!.NotAfter.ToUniversalTime());
        }

        var request = new JoinRequest { JoinToken = options.JoinToken, NodeName = options.NodeName, AgentVersion = AgentInfo.Version };
        request.Labels.Add(options.Labels.ToDictionary());
        var (key, csr) = credentials.CreateRequest();
        using (key)
        {
            if (bundle is not null)
            {
                request.Csr = ByteString.CopyFrom(csr);
            }

            JoinResponse response;
            using (var channel = CreateChannel(bundle, presentCertificate: false))
            {
                try
                {
                    response = await new EdgeSync.EdgeSyncClient(channel).JoinAsync(request, deadline: time.GetUtcNow().UtcDateTime.AddSeconds(30), cancellationToken: ct);
                }
                catch (RpcException ex) when (ex.StatusCode is StatusCode.Unauthenticated or StatusCode.InvalidArgument or StatusCode.PermissionDenied or StatusCode.ResourceExhausted)
                {
                    throw new FatalAgentException($"the server refused to let node '{options.NodeName}' join: {ex.Status.Detail}");
                }
            }

            if (bundle is not null)
            {
                if (response.Certificate.IsEmpty)
                {
                    throw new FatalAgentException("the server sent no node certificate: it may be running with --insecure-http while this agent dialled https");
                }

                credentials.Save(key, response.Certificate.ToByteArray());
            }

            identity = new NodeIdentity(ServerUrl, options.NodeName, response.NodeUid, response.NodeToken);
        }

        store.SaveIdentity(identity);
        LogJoined(logger, options.NodeName, ServerUrl);
        return identity;
    }

    /// <summary>Renews the node certificate with a third of its life left, with a fresh key pair; retries on failure.</summary>
    private async Task RenewLoopAsync(EdgeSync.EdgeSyncClient client, CancellationToken ct)
    {
        while (!ct.IsCancellationRequested && credentials.RenewAt is { } renewAt)
        {
            var wait = renewAt - time.GetUtcNow();
            if (wait > TimeSpan.Zero)
            {
                await Task.Delay(wait < TimeSpan.FromHours(1) ? wait : TimeSpan.FromHours(1), time, ct);
                continue;
            }

            var (key, csr) = credentials.CreateRequest();
            using (key)
            {
                try
                {
                    var response = await client.RenewAsync(new RenewRequest { Csr = ByteString.CopyFrom(csr) }, deadline: time.GetUtcNow().UtcDateTime.AddSeconds(30), cancellationToken: ct);
                    credentials.Save(key, response.Certificate.ToByteArray());
                    var notAfter = credentials.Current!.NotAfter.ToUniversalTime();
                    LogRenewed(logger, notAfter);
                }
                catch (RpcException ex) when (!ct.IsCancellationRequested)
                {
                    LogRenewFailed(logger, ex.Status.Detail);
                    await Task.Delay(TimeSpan.FromSeconds(5), time, ct);
                }
            }
        }
    }

    private async Task RunSessionAsync(EdgeSync.EdgeSyncClient client, NodeIdentity identity, bool mutualTls, Backoff backoff, CancellationToken ct)
    {
        // Over TLS the node is its certificate; a bearer credential only under --insecure-http.
        var headers = mutualTls ? new Metadata() : new Metadata { { "authorization", "Bearer " + identity.NodeToken } };
        using var sessionCts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        using var call = client.Sync(headers, cancellationToken: sessionCts.Token);
        using var writeLock = new SemaphoreSlim(1, 1);

        async Task SendAsync(AgentMessage message)
        {
            await writeLock.WaitAsync(sessionCts.Token);
            try
            {
                await call.RequestStream.WriteAsync(message, sessionCts.Token);
                Count("sent:" + message.BodyCase.ToString().ToLowerInvariant(), message.CalculateSize());
            }
            finally
            {
                writeLock.Release();
            }
        }

        var hello = new Hello
        {
            NodeName = identity.NodeName,
            AppliedRevision = store.AppliedRevision,
            AgentVersion = AgentInfo.Version,
            GatewayUrl = gateway.Url,
            Info = Monitoring.NodeFacts.Read(gateway.Url),
            // Known once the agent's listeners are bound, just after the sync loop starts.
            MeshAddress = await peers.Advertised.WaitAsync(ct) ?? "",
        };
        hello.BucketCursors.Add(data.KvCursors().ToDictionary());
        hello.Info.Runtimes.Add("wasm");
        var containerProblem = !OperatingSystem.IsLinux() ? "containers run on Linux only"
            : runtimes?.Containers is not { } containers ? "the agent runs no container runtime"
            : containers.Unavailable;
        if (containerProblem is null)
        {
            hello.Info.Runtimes.Add("runc");
        }
        else
        {
            hello.Info.ContainerRuntimeProblem = containerProblem;
        }

        var ai = Hosting.OutpostAgent.OnnxRuntimeOf(options);
        if (ai.Library is not null)
        {
            hello.Info.Runtimes.Add("onnx");
        }
        else
        {
            hello.Info.AiProblem = ai.Problem ?? "";
        }

        await SendAsync(new AgentMessage { Hello = hello });

        var acks = Channel.CreateUnbounded<BatchAck>();
        var kvAcks = Channel.CreateUnbounded<KvAck>();
        var logAcks = Channel.CreateUnbounded<LogAck>();
        var heartbeats = HeartbeatLoopAsync(SendAsync, sessionCts.Token);
        var shipping = ShipAsync(SendAsync, acks.Reader, sessionCts.Token);
        var kvShipping = ShipKvAsync(SendAsync, kvAcks.Reader, sessionCts.Token);
        var logShipping = ShipLogsAsync(SendAsync, logAcks.Reader, sessionCts.Token);
        var renewing = mutualTls ? RenewLoopAsync(client, sessionCts.Token) : Task.CompletedTask;
        // Config updates are applied in order by a loop of their own (an apply may download and
        // compile modules for seconds): wires, probes and the mesh registry never wait behind one.
        var configs = Channel.CreateUnbounded<ConfigUpdate>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
        var applying = ApplyLoopAsync(client, headers, configs.Reader, SendAsync, backoff, sessionCts);
        mesh.Linked(client, headers, sessionCts.Token);
        try
        {
            await foreach (var message in call.ResponseStream.ReadAllAsync(sessionCts.Token))
            {
                Count("received:" + (message.BodyCase == ServerMessage.BodyOneofCase.Config
                    ? (message.Config.Snapshot ? "config-snapshot" : "config-delta")
                    : message.BodyCase.ToString().ToLowerInvariant()), message.CalculateSize());
                if (message.BodyCase == ServerMessage.BodyOneofCase.BatchAck)
                {
                    acks.Writer.TryWrite(message.BatchAck);
                    continue;
                }

                if (message.BodyCase == ServerMessage.BodyOneofCase.KvAck)
                {
                    kvAcks.Writer.TryWrite(message.KvAck);
                    continue;
                }

                if (message.BodyCase == ServerMessage.BodyOneofCase.LogAck)
                {
                    logAcks.Writer.TryWrite(message.LogAck);
                    continue;
                }

                if (message.BodyCase == ServerMessage.BodyOneofCase.Probe)
                {
                    _ = EchoAsync(SendAsync, message.Probe);
                    continue;
                }

                if (message.BodyCase == ServerMessage.BodyOneofCase.OpenWire)
                {
                    wires.Serve(client, headers, message.OpenWire, sessionCts.Token);
                    continue;
                }

                if (message.BodyCase == ServerMessage.BodyOneofCase.Mesh)
                {
                    mesh.Update(message.Mesh);
                    continue;
                }

                if (logShipping.IsFaulted)
                {
                    await logShipping;
                }

                if (shipping.IsFaulted)
                {
                    await shipping; // surface why shipping stopped
                }

                if (kvShipping.IsFaulted)
                {
                    await kvShipping;
                }

                if (message.BodyCase == ServerMessage.BodyOneofCase.KvUpdate)
                {
                    ApplyKv(message.KvUpdate);
                    continue;
                }

                if (applying.IsFaulted)
                {
                    await applying;
                }

                if (message.BodyCase == ServerMessage.BodyOneofCase.Config)
                {
                    configs.Writer.TryWrite(message.Config);
                }
                else if (message.BodyCase == ServerMessage.BodyOneofCase.Rejected)
                {
                    throw new RpcException(new Status(StatusCode.PermissionDenied, message.Rejected.Message));
                }
            }

            throw new IOException("the server closed the sync stream");
        }
        catch (OperationCanceledException) when (sessionCts.IsCancellationRequested && !ct.IsCancellationRequested)
        {
            // Only the apply loop cancels the session before it ends: it failed, or is about to.
            await applying; // why the session ended: an update could not be applied
            throw;
        }
        finally
        {
            mesh.Unlinked();
            await sessionCts.CancelAsync();
            foreach (var loop in new[] { heartbeats, shipping, kvShipping, logShipping, renewing, applying })
            {
                try
                {
                    await loop;
                }
                catch (Exception ex) when (ex is OperationCanceledException or RpcException or IOException or InvalidOperationException or TimeoutException)
                {
                    // The stream is gone; the session is over either way.
                }
            }
        }
    }

    /// <summary>
    /// Applies config updates in the order they came, acking each once it is durable. A failure
    /// ends the session (cancelling it, so the receive loop stops too) and is rethrown.
    /// </summary>
    private async Task ApplyLoopAsync(EdgeSync.EdgeSyncClient client, Metadata headers, ChannelReader<ConfigUpdate> configs, Func<AgentMessage, Task> send, Backoff backoff, CancellationTokenSource session)
    {
        var ct = session.Token;
        try
        {
            await foreach (var config in configs.ReadAllAsync(ct))
            {
                await ApplyAsync(client, headers, config, ct);
                // Ack only after the update is durable: the server may treat the node as converged.
                await send(new AgentMessage { Ack = new Ack { Revision = config.Revision } });
                if (!Connected)
                {
                    Connected = true;
                    LogConnected(logger, ServerUrl, config.Revision);
                    if (_outage.Recovered() is { } outage)
                    {
                        LogBack(logger, outage.Attempts, (long)outage.Lasted.TotalSeconds);
                    }
                }

                backoff.Reset();
            }
        }
        catch (Exception) when (!ct.IsCancellationRequested)
        {
            await session.CancelAsync();
            throw;
        }
    }

    /// <summary>A server's liveness probe, echoed (a failed write ends the session elsewhere).</summary>
    private static async Task EchoAsync(Func<AgentMessage, Task> send, Probe probe)
    {
        try
        {
            await send(new AgentMessage { Probe = probe });
        }
        catch (Exception ex) when (ex is OperationCanceledException or RpcException or IOException or InvalidOperationException or ObjectDisposedException)
        {
            // The session is ending.
        }
    }

    /// <summary>Batches sent ahead of their acks: keeps the link busy while the server makes each one durable.</summary>
    private const int ShipWindow = 8;

    /// <summary>
    /// Ships the outbox oldest first, up to <see cref="ShipWindow"/> batches ahead of the acks.
    /// The server acks each batch in order once it is durable; only then are its records
    /// deleted here. After a cut, unacked records are sent again and the server's idempotent
    /// ingest drops the repeats.
    /// </summary>
    private async Task ShipAsync(Func<AgentMessage, Task> send, ChannelReader<BatchAck> acks, CancellationToken ct)
    {
        var inflight = new Queue<RecordBatch>();
        var lastSent = 0L;
        while (!ct.IsCancellationRequested)
        {
            _appended.Reader.TryRead(out _);
            while (inflight.Count < ShipWindow)
            {
                var records = data.ReadOutbox(BatchRecords, BatchBytes, lastSent);
                if (records.Count == 0)
                {
                    break;
                }

                var batch = Encode(records);
                await send(new AgentMessage { Records = batch });
                inflight.Enqueue(batch);
                lastSent = batch.LastSequence;
            }

            if (inflight.Count == 0)
            {
                await _appended.Reader.WaitToReadAsync(ct).AsTask().WaitAsync(TimeSpan.FromSeconds(5), ct).ContinueWith(_ => { }, TaskScheduler.Default);
                continue;
            }

            var expected = inflight.Dequeue();
            BatchAck ack;
            try
            {
                ack = await acks.ReadAsync(ct).AsTask().WaitAsync(AckTimeout, ct);
            }
            catch (TimeoutException)
            {
                throw new TimeoutException($"no ack for records {expected.FirstSequence}..{expected.LastSequence} within {AckTimeout.TotalSeconds:F0} s");
            }

            if (ack.LastSequence != expected.LastSequence)
            {
                throw new InvalidDataException($"ack for {ack.LastSequence} does not match batch {expected.FirstSequence}..{expected.LastSequence}");
            }

            data.DeleteThrough(ack.LastSequence);
            LogShipped(logger, expected.Count, expected.FirstSequence, expected.LastSequence, ack.Duplicates);
            OnStatusChanged();
        }
    }

    /// <summary>
    /// Ships pending bucket writes, one batch at a time: the latest value of each key written
    /// since the last ack. They are forgotten only once the server acks the merge.
    /// </summary>
    private async Task ShipKvAsync(Func<AgentMessage, Task> send, ChannelReader<KvAck> acks, CancellationToken ct)
    {
        while (!ct.IsCancellationRequested)
        {
            _kvPending.Reader.TryRead(out _);
            var pending = data.ReadKvPending(KvBatchWrites);
            if (pending.Count == 0)
            {
                await _kvPending.Reader.WaitToReadAsync(ct).AsTask().WaitAsync(TimeSpan.FromSeconds(5), ct).ContinueWith(_ => { }, TaskScheduler.Default);
                continue;
            }

            var batch = new KvBatch { Through = pending[^1].Sequence };
            foreach (var write in pending)
            {
                batch.Writes.Add(KvWire.ToWire(write.Bucket, write.Key, write.Version, write.Base));
            }

            await send(new AgentMessage { Kv = batch });
            KvAck ack;
            try
            {
                ack = await acks.ReadAsync(ct).AsTask().WaitAsync(AckTimeout, ct);
            }
            catch (TimeoutException)
            {
                throw new TimeoutException($"no ack for bucket writes through {batch.Through} within {AckTimeout.TotalSeconds:F0} s");
            }

            if (ack.Through != batch.Through)
            {
                throw new InvalidDataException($"bucket ack for {ack.Through} does not match batch through {batch.Through}");
            }

            data.AckKvThrough(ack.Through);
            if (ack.Refused > 0)
            {
                LogKvRefused(logger, ack.Refused, ack.RefusedReason);
            }

            LogKvShipped(logger, pending.Count, ack.Stored, ack.Kept, ack.Conflicts);
        }
    }

    /// <summary>
    /// Ships the log ring oldest first, one batch at a time and only while the outbox has no
    /// data waiting: logs never hold up data. Lines are deleted here once the server acks them;
    /// after a cut the unacked ones go again and the server stores each once.
    /// </summary>
    private async Task ShipLogsAsync(Func<AgentMessage, Task> send, ChannelReader<LogAck> acks, CancellationToken ct)
    {
        while (!ct.IsCancellationRequested)
        {
            _logged.Reader.TryRead(out _);
            var lines = data.Stats.PendingRecords == 0 ? logRing.Read(0, LogBatchLines, LogBatchBytes) : [];
            if (lines.Count == 0)
            {
                // Woken by new lines; the 1 s look also notices the outbox draining.
                await _logged.Reader.WaitToReadAsync(ct).AsTask().WaitAsync(TimeSpan.FromSeconds(1), ct).ContinueWith(_ => { }, TaskScheduler.Default);
                continue;
            }

            var list = new LogList();
            foreach (var line in lines)
            {
                list.Lines.Add(new LogLine
                {
                    Sequence = line.Sequence,
                    TimeUnixMs = line.At.ToUnixTimeMilliseconds(),
                    Level = line.Level,
                    App = line.App,
                    Revision = line.Revision,
                    Message = line.Message,
                });
            }

            var batch = new LogBatch
            {
                Stream = logRing.Stream,
                FirstSequence = lines[0].Sequence,
                LastSequence = lines[^1].Sequence,
                Codec = Core.Sync.BatchCodec.Brotli,
                Data = UnsafeByteOperations.UnsafeWrap(Core.Sync.BatchCodec.Compress(list.ToByteArray())),
                DroppedTotal = logRing.Stats.DroppedTotal,
            };
            await send(new AgentMessage { Logs = batch });
            LogAck ack;
            try
            {
                ack = await acks.ReadAsync(ct).AsTask().WaitAsync(AckTimeout, ct);
            }
            catch (TimeoutException)
            {
                throw new TimeoutException($"no ack for log lines {batch.FirstSequence}..{batch.LastSequence} within {AckTimeout.TotalSeconds:F0} s");
            }

            if (ack.LastSequence != batch.LastSequence)
            {
                throw new InvalidDataException($"log ack for {ack.LastSequence} does not match batch {batch.FirstSequence}..{batch.LastSequence}");
            }

            logRing.DeleteThrough(ack.LastSequence);
        }
    }

    /// <summary>Merges the cloud's changes of a bucket durably; the cursor moves in the same transaction.</summary>
    private void ApplyKv(KvUpdate update)
    {
        var policy = Core.Resources.BucketSpec.ParsePolicy(update.ConflictPolicy);
        var writes = update.Entries.Select(KvWire.FromWire).ToList();
        var changed = data.ApplyRemote(update.Bucket, policy, writes, update.Revision);
        LogKvApplied(logger, update.Bucket, update.Entries.Count, changed, update.Revision);
    }

    private static RecordBatch Encode(IReadOnlyList<OutboxRecord> records)
    {
        var list = new RecordList();
        foreach (var record in records)
        {
            list.Records.Add(new Record
            {
                Sequence = record.Sequence,
                Topic = record.Topic,
                Source = record.App,
                Payload = ByteString.CopyFrom(record.Payload),
                CreatedUnixMs = record.CreatedAt.ToUnixTimeMilliseconds(),
            });
        }

        return new RecordBatch
        {
            FirstSequence = records[0].Sequence,
            LastSequence = records[^1].Sequence,
            Count = records.Count,
            Codec = Core.Sync.BatchCodec.Brotli,
            Data = UnsafeByteOperations.UnsafeWrap(Core.Sync.BatchCodec.Compress(list.ToByteArray())),
        };
    }

    /// <summary>Beats on an interval, carrying only app states that changed since the last beat.</summary>
    private async Task HeartbeatLoopAsync(Func<AgentMessage, Task> send, CancellationToken ct)
    {
        var reported = new Dictionary<string, AppStatus>(StringComparer.Ordinal);
        OutboxStats? reportedOutbox = null;
        var usageReport = new Monitoring.UsageReport();
        using var timer = new PeriodicTimer(options.HeartbeatInterval, time);
        var tick = timer.WaitForNextTickAsync(ct).AsTask();
        while (!ct.IsCancellationRequested)
        {
            var changed = _statusChanged.Reader.WaitToReadAsync(ct).AsTask();
            var first = await Task.WhenAny(tick, changed);
            await first;
            var ticked = first == tick; // before tick is replaced below
            if (ticked)
            {
                tick = timer.WaitForNextTickAsync(ct).AsTask();
            }

            _statusChanged.Reader.TryRead(out _);
            var heartbeat = new Heartbeat();
            var current = apps.Status;
            foreach (var (name, status) in current)
            {
                if (!reported.TryGetValue(name, out var previous) || previous != status)
                {
                    heartbeat.Apps.Add(new AppState { Name = name, State = status.State, Message = status.Message, Generation = status.Generation, FailedGeneration = status.FailedGeneration });
                    reported[name] = status;
                }
            }

            foreach (var name in reported.Keys.Where(n => !current.ContainsKey(n)).ToList())
            {
                heartbeat.Apps.Add(new AppState { Name = name, State = "Removed" });
                reported.Remove(name);
            }

            foreach (var app in apps.Loaded)
            {
                var delta = app.Counters.TakeDelta();
                if (!delta.IsEmpty)
                {
                    heartbeat.Traffic.Add(MetricsWire.ToWire(app.Name, app.Version.Generation, delta));
                }
            }

            // Revisions swapped out since: what they answered until then still counts (a rolled-back
            // revision's 5xx above all). Forgotten once no request holds them and their last delta is taken.
            foreach (var app in apps.Retiring)
            {
                var finished = app.Retired;
                var delta = app.Counters.TakeDelta();
                if (!delta.IsEmpty)
                {
                    heartbeat.Traffic.Add(MetricsWire.ToWire(app.Name, app.Version.Generation, delta));
                }

                if (finished)
                {
                    apps.Forget(app);
                }
            }

            if (ticked && usageReport.Take(usage.Sample(), time.GetUtcNow()) is { } sample)
            {
                heartbeat.Usage = sample;
            }

            var outbox = data.Stats;
            if (outbox != reportedOutbox)
            {
                heartbeat.Outbox = new OutboxStatus
                {
                    PendingRecords = outbox.PendingRecords,
                    PendingBytes = outbox.PendingBytes,
                    DroppedTotal = outbox.DroppedTotal,
                    OverflowPolicy = outbox.Policy == OverflowPolicy.DropOldest ? "dropOldest" : "rejectNew",
                    QuotaBytes = outbox.QuotaBytes,
                };
                reportedOutbox = outbox;
            }

            if (ticked || heartbeat.Apps.Count > 0 || heartbeat.Outbox is not null || heartbeat.Traffic.Count > 0)
            {
                await send(new AgentMessage { Heartbeat = heartbeat });
            }
        }
    }

    private async Task ApplyAsync(EdgeSync.EdgeSyncClient client, Metadata headers, ConfigUpdate update, CancellationToken ct)
    {
        var upserts = new List<DesiredResource>();
        foreach (var resource in update.Upserts)
        {
            if (resource.Kind == ResourceKind.Application.Kind)
            {
                var spec = JsonNode.Parse(resource.Json)?["spec"] as JsonObject
                    ?? throw new InvalidDataException($"application '{resource.Name}' arrived without a spec");
                var app = ApplicationSpec.FromJson(spec);
                var digest = app.ArtifactDigest
                    ?? throw new InvalidDataException($"application '{resource.Name}' arrived without a {(app.IsContainer ? "image" : "module")} digest");
                if (!app.IsContainer)
                {
                    await EnsureModuleAsync(client, headers, digest, ct);
                    foreach (var model in app.Models)
                    {
                        await EnsureModuleAsync(client, headers, model.Digest
                            ?? throw new InvalidDataException($"application '{resource.Name}' arrived with model '{model.Name}' without a digest"), ct);
                    }

                    foreach (var files in app.Files)
                    {
                        await EnsureFilesAsync(client, headers, files.Digest
                            ?? throw new InvalidDataException($"application '{resource.Name}' arrived with spec.files at {files.MountPath} without a digest"), ct);
                    }
                }
                else if (OperatingSystem.IsLinux() && runtimes?.Containers is { } containers)
                {
                    var bytes = await containers.EnsureImageAsync(digest, (blob, offset, path, token) => FetchBlobAsync(client, headers, blob, offset, path, token), ct);
                    if (bytes > 0)
                    {
                        LogImageFetched(logger, app.Image ?? digest, digest, bytes);
                    }
                }
            }

            var json = resource.Kind == ResourceKind.Secret.Kind ? SealSecret(resource.Name, resource.Json) : resource.Json;
            upserts.Add(new DesiredResource(resource.Kind, resource.Name, resource.ResourceVersion, resource.Generation, json));
        }

        store.Apply(update.Revision, update.Snapshot, upserts, update.Deletes.Select(d => (d.Kind, d.Name)));
        apps.Reconcile(store.LoadDesired());
        foreach (var bucket in data.KvCursors().Keys.Where(b => !services.BucketOf(b).SyncsDown))
        {
            // The bucket no longer reaches this node: should it come back, it comes back whole.
            data.ForgetKvCursor(bucket);
        }

        var shipping = data.ShippingBuckets();
        foreach (var (bucket, _) in services.Buckets.Where(b => b.Value.SyncsUp && !shipping.Contains(b.Key)))
        {
            var queued = data.StartShipping(bucket);
            LogKvStartsShipping(logger, bucket, queued);
        }

        foreach (var bucket in shipping.Where(b => !services.BucketOf(b).SyncsUp))
        {
            data.StopShipping(bucket);
        }
        LogApplied(logger, update.Revision, update.Snapshot, update.Upserts.Count, update.Deletes.Count);
    }

    /// <summary>A Secret's values sealed with this node's key before they touch the disk.</summary>
    private string SealSecret(string name, string json)
    {
        var secret = JsonNode.Parse(json)!.AsObject();
        if (secret["spec"]?["data"] is JsonObject data)
        {
            foreach (var (key, value) in data.ToList())
            {
                data[key] = secretBox.Seal((string)value!, Core.Security.SecretBox.ContextOf(name, key));
            }
        }

        return secret.ToJsonString();
    }

    /// <summary>Downloads a module once per digest, resuming a partial download where it stopped.</summary>
    private async Task EnsureModuleAsync(EdgeSync.EdgeSyncClient client, Metadata headers, string digest, CancellationToken ct)
    {
        if (modules.Has(digest))
        {
            return;
        }

        var offset = modules.PartialLength(digest);
        using var call = client.FetchBlob(new FetchBlobRequest { Digest = digest, Offset = offset }, headers, cancellationToken: ct);
        await using (var file = new FileStream(modules.PartialPathFor(digest), FileMode.Append, FileAccess.Write, FileShare.None))
        {
            await foreach (var chunk in call.ResponseStream.ReadAllAsync(ct))
            {
                if (chunk.Offset != file.Length)
                {
                    throw new InvalidDataException($"module {digest}: chunk at offset {chunk.Offset}, expected {file.Length}");
                }

                chunk.Data.WriteTo(file);
            }

            file.Flush(flushToDisk: true);
        }

        modules.Complete(digest);
        LogModuleFetched(logger, digest, offset);
    }

    /// <summary>
    /// Fetches an app's spec.files archive (resumable, like a module, into the same cache) and
    /// unpacks it once per digest for every app that mounts it.
    /// </summary>
    private async Task EnsureFilesAsync(EdgeSync.EdgeSyncClient client, Metadata headers, string digest, CancellationToken ct)
    {
        if (apps.Storage is not { } storage || Directory.Exists(storage.FilesPath(digest)))
        {
            return;
        }

        await EnsureModuleAsync(client, headers, digest, ct);
        Directory.CreateDirectory(storage.FilesDir);
        FilesArchive.Extract(modules.Read(digest), storage.FilesPath(digest));
    }

    /// <summary>Appends a blob's bytes from <paramref name="offset"/> to <paramref name="path"/>, over the node's connection.</summary>
    private static async Task FetchBlobAsync(EdgeSync.EdgeSyncClient client, Metadata headers, string digest, long offset, string path, CancellationToken ct)
    {
        using var call = client.FetchBlob(new FetchBlobRequest { Digest = digest, Offset = offset }, headers, cancellationToken: ct);
        await using var file = new FileStream(path, FileMode.Append, FileAccess.Write, FileShare.None);
        await foreach (var chunk in call.ResponseStream.ReadAllAsync(ct))
        {
            if (chunk.Offset != file.Length)
            {
                throw new InvalidDataException($"blob {digest}: chunk at offset {chunk.Offset}, expected {file.Length}");
            }

            chunk.Data.WriteTo(file);
        }

        file.Flush(flushToDisk: true);
    }

    private static string Describe(Exception ex) => ex switch
    {
        RpcException rpc => $"{rpc.StatusCode}: {rpc.Status.Detail}",
        HttpRequestException http when http.InnerException is not null => $"{http.Message} ({http.InnerException.Message})",
        _ => ex.Message,
    };

    [LoggerMessage(Level = LogLevel.Warning, Message = "Refused the server's certificate: {Reason}")]
    private static partial void LogServerRejected(ILogger logger, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "Joined as node '{Node}' at {Server}")]
    private static partial void LogJoined(ILogger logger, string node, string server);

    [LoggerMessage(Level = LogLevel.Information, Message = "Connected to {Server}; in sync at fleet revision {Revision}")]
    private static partial void LogConnected(ILogger logger, string server, long revision);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Sync stream lost: {Reason}")]
    private static partial void LogDisconnected(ILogger logger, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "Still no sync stream: {Attempts} attempts over {Seconds} s, serving from local state; last: {Reason}")]
    private static partial void LogStillDisconnected(ILogger logger, int attempts, long seconds, string reason);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Sync stream still down: {Reason}")]
    private static partial void LogDisconnectedAgain(ILogger logger, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "Back in sync after {Attempts} failed attempts over {Seconds} s")]
    private static partial void LogBack(ILogger logger, int attempts, long seconds);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Reconnecting in {DelayMs} ms")]
    private static partial void LogRetrying(ILogger logger, long delayMs);

    [LoggerMessage(Level = LogLevel.Warning, Message = "The node certificate expired on {NotAfter:u} while the server was out of reach; joining again with the join token")]
    private static partial void LogCertificateExpired(ILogger logger, DateTime notAfter);

    [LoggerMessage(Level = LogLevel.Information, Message = "Renewed the node certificate (valid until {NotAfter:u})")]
    private static partial void LogRenewed(ILogger logger, DateTime notAfter);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Could not renew the node certificate: {Reason}; retrying")]
    private static partial void LogRenewFailed(ILogger logger, string reason);

    [LoggerMessage(Level = LogLevel.Error, Message = "The server refused this node's credential: {Reason}")]
    private static partial void LogCredentialRefused(ILogger logger, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "Applied fleet revision {Revision} (snapshot: {Snapshot}, {Upserts} upserts, {Deletes} deletes)")]
    private static partial void LogApplied(ILogger logger, long revision, bool snapshot, int upserts, int deletes);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Shipped {Count} records ({First}..{Last}); {Duplicates} were already stored")]
    private static partial void LogShipped(ILogger logger, int count, long first, long last, int duplicates);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Shipped {Count} bucket writes: {Stored} stored, {Kept} lost to newer values, {Conflicts} conflicts")]
    private static partial void LogKvShipped(ILogger logger, int count, int stored, int kept, int conflicts);

    [LoggerMessage(Level = LogLevel.Information, Message = "Bucket {Bucket} now syncs up; {Count} keys it already held are queued to ship")]
    private static partial void LogKvStartsShipping(ILogger logger, string bucket, int count);

    [LoggerMessage(Level = LogLevel.Warning, Message = "The server refused {Count} bucket writes: {Reason}")]
    private static partial void LogKvRefused(ILogger logger, int count, string reason);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Bucket {Bucket}: merged {Count} cloud values ({Changed} changed), now at bucket revision {Revision}")]
    private static partial void LogKvApplied(ILogger logger, string bucket, int count, int changed, long revision);

    [LoggerMessage(Level = LogLevel.Information, Message = "Fetched image {Image} ({Digest}): {Bytes} bytes of blobs this node did not have")]
    private static partial void LogImageFetched(ILogger logger, string image, string digest, long bytes);

    [LoggerMessage(Level = LogLevel.Information, Message = "Fetched module {Digest} (resumed at byte {Offset})")]
    private static partial void LogModuleFetched(ILogger logger, string digest, long offset);
}

/// <summary>An error the agent cannot retry its way out of (a refused join).</summary>
public sealed class FatalAgentException : Exception
{
    public FatalAgentException(string message)
        : base(message)
    {
    }

    public FatalAgentException()
    {
    }

    public FatalAgentException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}
