using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net.Security;
using System.Security.Cryptography;
using System.Text.Json.Nodes;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;
using Microsoft.Extensions.Logging.Abstractions;
using Outpost.Agent.Hosting;
using Outpost.Agent.Monitoring;
using Outpost.Agent.Sync;
using Outpost.Core.Resources;
using Outpost.Core.Security;
using Outpost.Protocol;

namespace Outpost.Bench;

/// <summary>
/// What every simulated node shares: the server, the CA its join token pins (fetched and checked
/// once, as each agent does on first contact), the host facts and usage a real agent would read,
/// and the counts the scenario reads. Per node stays only what a node must hold on its own.
/// </summary>
internal sealed class FleetContext
{
    private readonly Lock _usageLock = new();
    private readonly NodeUsageProbe _probe;
    private NodeUsage _usage = new();
    private long _usageAt;

    private FleetContext(IReadOnlyList<string> serverUrls, string joinToken, string workDir, TrustBundle bundle, TimeSpan recordInterval)
    {
        RecordInterval = recordInterval;
        ServerUrls = serverUrls;
        JoinToken = joinToken;
        WorkDir = workDir;
        Validator = bundle.ServerValidator();
        _bundle = bundle;
        _probe = new NodeUsageProbe(workDir);
        Info = NodeFacts.Read("http://127.0.0.1:8080");
    }

    /// <summary>The server's replicas: node i dials replica i mod count first, and the next after each failure.</summary>
    public IReadOnlyList<string> ServerUrls { get; }

    public string JoinToken { get; }

    public string WorkDir { get; }

    private readonly TrustBundle _bundle;

    /// <summary>The agent's chain policy for the server's certificate: the pinned CA alone.</summary>
    public System.Security.Cryptography.X509Certificates.X509ChainPolicy ChainPolicy() => _bundle.ChainPolicy(TrustBundle.ServerAuthOid);

    /// <summary>Accepts only server certificates chaining to the pinned CA; one delegate for every node.</summary>
    public RemoteCertificateValidationCallback Validator { get; }

    public NodeInfo Info { get; }

    public static string AgentVersion { get; } =
        typeof(SyncClient).Assembly.GetCustomAttributes(typeof(System.Reflection.AssemblyInformationalVersionAttribute), false)
            .OfType<System.Reflection.AssemblyInformationalVersionAttribute>().FirstOrDefault()?.InformationalVersion.Split('+')[0] ?? "0.0.0";

    /// <summary>How often a node beats while connected: the agent's default.</summary>
    public TimeSpan HeartbeatInterval { get; init; } = new AgentOptions { ServerUrl = "https://x", NodeName = "x", DataDir = "x" }.HeartbeatInterval;

    /// <summary>How often each node uploads one data record (a trickle); zero: none.</summary>
    public TimeSpan RecordInterval { get; }

    /// <summary>Session attempts (connect, Hello, first update) that ended in an error, by reason.</summary>
    public ConcurrentDictionary<string, int> Failures { get; } = new(StringComparer.Ordinal);

    private int _failed;

    public int FailedAttempts => Volatile.Read(ref _failed);

    private int _inSync;

    /// <summary>Nodes whose current session has acked its first update.</summary>
    public int InSync => Volatile.Read(ref _inSync);

    public long RecordsAcked => Interlocked.Read(ref _recordsAcked);

    private long _recordsAcked;

    /// <summary>Called after a node acked an update, with when (Stopwatch ticks): the scenario times fan-outs with it.</summary>
    public Action<FleetNode, ConfigUpdate, long>? Applied { get; set; }

    /// <summary>Fetches /cacerts and checks it against the join token's pin, as an agent does on first contact (with the agent's own code).</summary>
    public static async Task<FleetContext> CreateAsync(IReadOnlyList<string> serverUrls, string joinToken, string workDir, TimeSpan recordInterval, CancellationToken ct)
    {
        var trustDir = Path.Combine(workDir, "trust");
        var options = new AgentOptions { ServerUrl = serverUrls[0], JoinToken = joinToken, NodeName = "fleet-trust", DataDir = trustDir };
        Directory.CreateDirectory(trustDir);
        var bundle = await new ServerTrust(options, NullLogger<ServerTrust>.Instance).EnsureAsync(serverUrls[0], ct)
            ?? throw new InvalidOperationException("the fleet needs a TLS server");
        return new FleetContext(serverUrls, joinToken, workDir, bundle, recordInterval);
    }

    /// <summary>The host's usage, as every agent on this box would read it; sampled at most every 5 s for the whole fleet.</summary>
    public NodeUsage Usage()
    {
        lock (_usageLock)
        {
            if (Stopwatch.GetElapsedTime(_usageAt) > TimeSpan.FromSeconds(5) || _usageAt == 0)
            {
                _usage = _probe.Sample();
                _usageAt = Stopwatch.GetTimestamp();
            }

            return _usage;
        }
    }

    public void Failed(string reason)
    {
        Interlocked.Increment(ref _failed);
        Failures.AddOrUpdate(reason, 1, (_, n) => n + 1);
    }

    public void ResetFailures()
    {
        Interlocked.Exchange(ref _failed, 0);
        Failures.Clear();
    }

    internal void SyncChanged(bool inSync) => Interlocked.Add(ref _inSync, inSync ? 1 : -1);

    internal void RecordAcked() => Interlocked.Increment(ref _recordsAcked);
}

/// <summary>
/// One simulated edge node: its own key pair and certificate (the agent's NodeCredentials), its own
/// TCP+TLS connection (one SocketsHttpHandler), and the agent's protocol: Join with a CSR, then one
/// Sync stream (Hello; heartbeats with usage; each update acked once held; app states reported as
/// the agent's heartbeat loop does; a trickle of record batches), reconnecting with the agent's
/// jittered backoff. It runs no Wasm: an app counts as serving once its module is fetched.
/// No thread of its own; a few hundred bytes of state besides the connection.
/// </summary>
internal sealed class FleetNode
{
    private readonly FleetContext _fleet;
    private readonly NodeCredentials _credentials;
    private readonly AgentOptions _options;
    // The agent's backoff, at its defaults.
    private readonly Backoff _backoff;
    private readonly Dictionary<string, (long Generation, string? Digest)> _held = new(StringComparer.Ordinal);
    private readonly Lock _gate = new(); // _held: the receive loop writes it, the heartbeat loop reads it
    private readonly HashSet<string> _modules = new(StringComparer.Ordinal);
    private readonly TaskCompletionSource _firstSync = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private long _applied;
    private long _nextSequence = 1;
    private RecordBatch? _unacked;
    private GrpcChannel? _channel;
    private bool _joined;
    private bool _inSync;

    public FleetNode(FleetContext fleet, int index, string name, IReadOnlyDictionary<string, string> labels)
    {
        _fleet = fleet;
        Index = index;
        Name = name;
        _server = index % fleet.ServerUrls.Count;
        _options = new AgentOptions { ServerUrl = fleet.ServerUrls[_server], JoinToken = fleet.JoinToken, NodeName = name, DataDir = Path.Combine(fleet.WorkDir, "nodes", name), Labels = labels };
        _credentials = new NodeCredentials(_options);
        _backoff = new Backoff(_options.InitialBackoff, _options.MaxBackoff);
    }

    public int Index { get; }

    private int _server;

    /// <summary>The replica (index into <see cref="FleetContext.ServerUrls"/>) the node dials now.</summary>
    public int Server => Volatile.Read(ref _server);

    /// <summary>Sessions that reached sync so far (the storm waits for each node's next one).</summary>
    public int Sessions => Volatile.Read(ref _sessions);

    private int _sessions;

    public string Name { get; }

    /// <summary>Completes once the node's first session is in sync (or its join was refused).</summary>
    public Task FirstSync => _firstSync.Task;

    /// <summary>Joins once, then holds a sync session until <paramref name="ct"/>, reconnecting after every loss as the agent does.</summary>
    public async Task RunAsync(CancellationToken ct)
    {
        while (!ct.IsCancellationRequested)
        {
            try
            {
                if (!_joined)
                {
                    await JoinAsync(ct);
                }

                using var channel = CreateChannel(presentCertificate: true);
                Volatile.Write(ref _channel, channel);
                await SessionAsync(new EdgeSync.EdgeSyncClient(channel), ct);
            }
            catch (RpcException ex) when (ex.StatusCode is StatusCode.Unauthenticated or StatusCode.InvalidArgument or StatusCode.PermissionDenied or StatusCode.ResourceExhausted && !_joined)
            {
                _fleet.Failed("join refused: " + ex.Status.Detail);
                _firstSync.TrySetException(ex);
                return; // fatal for an agent too
            }
            catch (Exception ex) when (!ct.IsCancellationRequested)
            {
                if (!_inSync)
                {
                    _fleet.Failed(Describe(ex));
                }

                // As the agent: the next attempt goes to the next replica.
                Volatile.Write(ref _server, (_server + 1) % _fleet.ServerUrls.Count);
            }
            finally
            {
                Volatile.Write(ref _channel, null);
                if (_inSync)
                {
                    _inSync = false;
                    _fleet.SyncChanged(false);
                }
            }

            try
            {
                await Task.Delay(_backoff.Next(), ct);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    /// <summary>Cuts the node's connection (disposes its channel): the session fails and the node reconnects on its own.</summary>
    public void Drop() => Volatile.Read(ref _channel)?.Dispose();

    private async Task JoinAsync(CancellationToken ct)
    {
        var request = new JoinRequest { JoinToken = _fleet.JoinToken, NodeName = Name, AgentVersion = FleetContext.AgentVersion };
        request.Labels.Add(_options.Labels.ToDictionary());
        var (key, csr) = _credentials.CreateRequest();
        using (key)
        {
            request.Csr = ByteString.CopyFrom(csr);
            JoinResponse response;
            using (var channel = CreateChannel(presentCertificate: false))
            {
                response = await new EdgeSync.EdgeSyncClient(channel).JoinAsync(request, deadline: DateTime.UtcNow.AddSeconds(30), cancellationToken: ct);
            }

            _credentials.Save(key, response.Certificate.ToByteArray());
        }

        _joined = true;
    }

    /// <summary>The agent's channel: verify the pinned CA, present the node certificate, one HTTP/2 connection, rare pings.</summary>
    private GrpcChannel CreateChannel(bool presentCertificate) => GrpcChannel.ForAddress(_fleet.ServerUrls[Server], new GrpcChannelOptions
    {
        HttpHandler = new SocketsHttpHandler
        {
            SslOptions = new SslClientAuthenticationOptions
            {
                CertificateChainPolicy = _fleet.ChainPolicy(),
                RemoteCertificateValidationCallback = _fleet.Validator,
                LocalCertificateSelectionCallback = presentCertificate ? (_, _, _, _, _) => _credentials.Current! : null,
            },
            ConnectTimeout = SyncClient.HandshakeTimeout,
            ConnectCallback = SyncClient.ConnectAsync,
            KeepAlivePingDelay = _options.KeepAlive,
            KeepAlivePingTimeout = _options.KeepAlivePingTimeout,
            KeepAlivePingPolicy = HttpKeepAlivePingPolicy.Always,
            PooledConnectionIdleTimeout = Timeout.InfiniteTimeSpan,
            EnableMultipleHttp2Connections = false,
        },
        MaxReceiveMessageSize = 16 * 1024 * 1024,
        DisposeHttpClient = true, // as the agent: the channel owns its handler and closes its connection
    });

    private async Task SessionAsync(EdgeSync.EdgeSyncClient client, CancellationToken ct)
    {
        using var session = CancellationTokenSource.CreateLinkedTokenSource(ct);
        using var call = client.Sync(cancellationToken: session.Token);
        using var writeLock = new SemaphoreSlim(1, 1);
        async Task SendAsync(AgentMessage message)
        {
            await writeLock.WaitAsync(session.Token);
            try
            {
                await call.RequestStream.WriteAsync(message, session.Token);
            }
            finally
            {
                writeLock.Release();
            }
        }

        var hello = new Hello
        {
            NodeName = Name,
            AppliedRevision = _applied,
            AgentVersion = FleetContext.AgentVersion,
            GatewayUrl = "http://127.0.0.1:8080",
            Info = _fleet.Info,
        };
        await SendAsync(new AgentMessage { Hello = hello });

        // What this session has told the server, as the agent's heartbeat loop keeps it: every app again after a reconnect.
        var beats = new HeartbeatState(this);
        var heartbeats = HeartbeatLoopAsync(SendAsync, beats, session.Token);
        var records = _fleet.RecordInterval > TimeSpan.Zero ? RecordLoopAsync(SendAsync, session.Token) : Task.CompletedTask;
        try
        {
            await foreach (var message in call.ResponseStream.ReadAllAsync(session.Token))
            {
                switch (message.BodyCase)
                {
                    case ServerMessage.BodyOneofCase.Config:
                        var appsChanged = await ApplyAsync(client, message.Config, session.Token);
                        await SendAsync(new AgentMessage { Ack = new Ack { Revision = message.Config.Revision } });
                        _applied = message.Config.Revision;
                        var at = Stopwatch.GetTimestamp();
                        if (!_inSync)
                        {
                            _inSync = true;
                            Interlocked.Increment(ref _sessions);
                            _fleet.SyncChanged(true);
                            _firstSync.TrySetResult();
                        }

                        _backoff.Reset();
                        _fleet.Applied?.Invoke(this, message.Config, at);
                        // The agent's registry raises StatusChanged and its heartbeat loop reports at once.
                        if (appsChanged)
                        {
                            await SendAsync(new AgentMessage { Heartbeat = beats.Take(null, null) });
                        }

                        break;
                    case ServerMessage.BodyOneofCase.BatchAck:
                        if (_unacked is { } sent && message.BatchAck.LastSequence == sent.LastSequence)
                        {
                            _unacked = null;
                            _fleet.RecordAcked();
                        }

                        break;
                    case ServerMessage.BodyOneofCase.Probe:
                        await SendAsync(new AgentMessage { Probe = message.Probe });
                        break;
                    case ServerMessage.BodyOneofCase.Rejected:
                        throw new RpcException(new Status(StatusCode.PermissionDenied, message.Rejected.Message));
                    default:
                        break; // mesh registry, bucket updates: nothing to run them on
                }
            }

            throw new IOException("the server closed the sync stream");
        }
        finally
        {
            await session.CancelAsync();
            foreach (var loop in new[] { heartbeats, records })
            {
                try
                {
                    await loop;
                }
                catch (Exception ex) when (ex is OperationCanceledException or RpcException or IOException or InvalidOperationException or ObjectDisposedException)
                {
                    // The stream is gone; the session is over either way.
                }
            }
        }
    }

    /// <summary>
    /// The update applied in memory; each new module fetched with FetchBlob on the node's connection,
    /// as the agent does. True when an app came, went or moved to another revision.
    /// </summary>
    private async Task<bool> ApplyAsync(EdgeSync.EdgeSyncClient client, ConfigUpdate update, CancellationToken ct)
    {
        string AppsHeld()
        {
            lock (_gate)
            {
                return string.Join(',', _held.Where(h => h.Value.Digest is not null).Select(h => FormattableString.Invariant($"{h.Key}@{h.Value.Generation}")).Order(StringComparer.Ordinal));
            }
        }

        var before = AppsHeld();
        if (update.Snapshot)
        {
            lock (_gate)
            {
                _held.Clear();
            }
        }

        foreach (var resource in update.Upserts)
        {
            string? digest = null;
            if (resource.Kind == ResourceKind.Application.Kind)
            {
                var spec = JsonNode.Parse(resource.Json)?["spec"] as JsonObject
                    ?? throw new InvalidDataException($"application '{resource.Name}' arrived without a spec");
                digest = ApplicationSpec.FromJson(spec).Module.Digest
                    ?? throw new InvalidDataException($"application '{resource.Name}' arrived without a module digest");
                if (!_modules.Contains(digest))
                {
                    await FetchAsync(client, digest, ct);
                    _modules.Add(digest);
                }
            }

            lock (_gate)
            {
                _held[resource.Kind + "/" + resource.Name] = (resource.Generation, digest);
            }
        }

        lock (_gate)
        {
            foreach (var gone in update.Deletes)
            {
                _held.Remove(gone.Kind + "/" + gone.Name);
            }
        }

        return AppsHeld() != before;
    }

    private static async Task FetchAsync(EdgeSync.EdgeSyncClient client, string digest, CancellationToken ct)
    {
        using var call = client.FetchBlob(new FetchBlobRequest { Digest = digest, Offset = 0 }, cancellationToken: ct);
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        long length = 0;
        await foreach (var chunk in call.ResponseStream.ReadAllAsync(ct))
        {
            if (chunk.Offset != length)
            {
                throw new InvalidDataException($"module {digest}: chunk at offset {chunk.Offset}, expected {length}");
            }

            hash.AppendData(chunk.Data.Span);
            length += chunk.Data.Length;
        }

        if ("sha256:" + Convert.ToHexStringLower(hash.GetHashAndReset()) != digest)
        {
            throw new InvalidDataException($"module {digest}: the bytes fetched do not match the digest");
        }
    }

    /// <summary>What the agent's heartbeat loop tracks per session: app states, outbox and usage last reported.</summary>
    private sealed class HeartbeatState(FleetNode node)
    {
        private readonly Dictionary<string, long> _reported = new(StringComparer.Ordinal);
        private readonly UsageReport _usage = new();
        private long? _reportedPending;

        /// <summary>The heartbeat: changed apps always; usage and the outbox only on a timed beat, when they changed.</summary>
        public Heartbeat Take(NodeUsage? sample, long? pendingRecords)
        {
            var heartbeat = new Heartbeat();
            lock (node._gate)
            {
                foreach (var (key, held) in node._held)
                {
                    if (held.Digest is not null && (!_reported.TryGetValue(key, out var generation) || generation != held.Generation))
                    {
                        heartbeat.Apps.Add(new AppState { Name = NameOf(key), State = "Ready", Generation = held.Generation });
                        _reported[key] = held.Generation;
                    }
                }

                foreach (var key in _reported.Keys.Where(k => !node._held.ContainsKey(k)).ToList())
                {
                    heartbeat.Apps.Add(new AppState { Name = NameOf(key), State = "Removed" });
                    _reported.Remove(key);
                }
            }

            if (sample is not null && _usage.Take(sample, DateTimeOffset.UtcNow) is { } usage)
            {
                heartbeat.Usage = usage;
            }

            if (pendingRecords is { } pending && pending != _reportedPending)
            {
                heartbeat.Outbox = new OutboxStatus { PendingRecords = pending, PendingBytes = pending * RecordBytes, OverflowPolicy = "dropOldest", QuotaBytes = 256L << 20 };
                _reportedPending = pending;
            }

            return heartbeat;
        }

        private static string NameOf(string key) => key[(key.IndexOf('/', StringComparison.Ordinal) + 1)..];
    }

    private async Task HeartbeatLoopAsync(Func<AgentMessage, Task> send, HeartbeatState state, CancellationToken ct)
    {
        using var timer = new PeriodicTimer(_fleet.HeartbeatInterval);
        while (await timer.WaitForNextTickAsync(ct))
        {
            await send(new AgentMessage { Heartbeat = state.Take(_fleet.Usage(), _unacked is null ? 0 : _unacked.Count) });
        }
    }

    private const int RecordBytes = 200;

    /// <summary>One 200-byte record per interval (the first at a random point of it), shipped as the agent ships a batch; one still unacked goes again on the next session.</summary>
    private async Task RecordLoopAsync(Func<AgentMessage, Task> send, CancellationToken ct)
    {
        var interval = _fleet.RecordInterval;
        if (_unacked is { } pending)
        {
            await send(new AgentMessage { Records = pending });
        }

        await Task.Delay(TimeSpan.FromMilliseconds(Random.Shared.NextDouble() * interval.TotalMilliseconds), ct);
        while (!ct.IsCancellationRequested)
        {
            if (_unacked is null)
            {
                var sequence = _nextSequence++;
                var list = new RecordList();
                list.Records.Add(new Record
                {
                    Sequence = sequence,
                    Topic = "readings",
                    Source = "sensor",
                    Payload = ByteString.CopyFrom(RandomNumberGenerator.GetBytes(RecordBytes)),
                    CreatedUnixMs = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(),
                });
                var batch = new RecordBatch
                {
                    FirstSequence = sequence,
                    LastSequence = sequence,
                    Count = 1,
                    Codec = Core.Sync.BatchCodec.Brotli,
                    Data = UnsafeByteOperations.UnsafeWrap(Core.Sync.BatchCodec.Compress(list.ToByteArray())),
                };
                _unacked = batch;
                await send(new AgentMessage { Records = batch });
            }

            await Task.Delay(interval, ct);
        }
    }

    private static string Describe(Exception ex) => ex switch
    {
        RpcException rpc => $"{rpc.StatusCode}: {Trim(rpc.Status.Detail)}",
        HttpRequestException http when http.InnerException is not null => $"{http.Message} ({Trim(http.InnerException.Message)})",
        _ => $"{ex.GetType().Name}: {Trim(ex.Message)}",
    };

    // Reasons name ports and peers: keep the part that says what went wrong, so they group.
    private static string Trim(string message) => message.Length > 160 ? message[..160] : message;
}
