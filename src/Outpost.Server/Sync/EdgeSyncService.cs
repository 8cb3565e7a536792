using System.Text.Json.Nodes;
using System.Threading.Channels;
using Grpc.Core;
using Microsoft.Extensions.Logging;
using Outpost.Core.Manifests;
using Outpost.Core.Resources;
using Outpost.Core.Store;
using Outpost.Core.Sync;
using Outpost.Core.Tokens;
using Outpost.Protocol;
using Outpost.Server.Api;

namespace Outpost.Server.Sync;

/// <summary>
/// The agent-facing endpoint: join, the one long-lived sync stream, and blob downloads.
/// A session sends the node a snapshot, then only what changes for it.
/// </summary>
public sealed partial class EdgeSyncService(
    IControlPlaneStore store,
    NodeLeases leases,
    SyncAccounting accounting,
    ResourceView view,
    BucketSync buckets,
    NodeDesiredState desiredState,
    Registry.ImageBlobs imageBlobs,
    ChangeRouter router,
    RolloutController rollouts,
    Monitoring.MetricsRecorder metrics,
    Monitoring.LogArchive logs,
    Security.JoinGuard joinGuard,
    Security.ServerTls tls,
    Hosting.ServerOptions options,
    Mesh.WireRelay relay,
    Mesh.MeshDialer dialer,
    Mesh.MeshPublisher mesh,
    TimeProvider time,
    ILogger<EdgeSyncService> logger) : EdgeSync.EdgeSyncBase
{
    private const int ChunkSize = 64 * 1024;
    private const int SlabSize = 16 * ChunkSize;

    public override async Task<JoinResponse> Join(JoinRequest request, ServerCallContext context)
    {
        ArgumentNullException.ThrowIfNull(request);
        ArgumentNullException.ThrowIfNull(context);
        var ct = context.CancellationToken;
        var address = context.GetHttpContext().Connection.RemoteIpAddress?.ToString() ?? context.Peer;
        var wait = joinGuard.RetryAfter(address);
        if (wait > TimeSpan.Zero)
        {
            LogJoinThrottled(logger, request.NodeName, address);
            throw new RpcException(new Status(StatusCode.ResourceExhausted,
                $"join refused: too many failed joins from {address}; try again in {Math.Ceiling(wait.TotalSeconds):F0} s"));
        }

        var reason = await CheckTokenAsync(request.JoinToken, TokenKind.Join, ct);
        var token = reason is null && TokenCodec.TryParse(request.JoinToken, out _, out var tokenId, out _) ? await store.GetTokenAsync(tokenId, ct) : null;
        if (reason is null && token is { MaxUses: { } max } && token.Uses >= max)
        {
            reason = $"the token has been used {max} times, all it allows";
        }

        if (reason is not null || token is null)
        {
            reason ??= "the token is unknown, revoked or expired";
            joinGuard.Failed(address);
            LogJoinRefused(logger, request.NodeName, context.Peer, reason);
            throw new RpcException(new Status(StatusCode.Unauthenticated, $"join refused: {reason}"));
        }

        // The token's labels are the admin's word: they override what the node asks for.
        var nodeLabels = new Dictionary<string, string>(request.Labels, StringComparer.Ordinal);
        foreach (var (key, value) in token.Labels)
        {
            nodeLabels[key] = value;
        }

        var labels = new JsonObject();
        foreach (var (key, value) in nodeLabels)
        {
            labels[key] = value;
        }

        // Validate the node as if it were a manifest, so a bad name or label is named precisely.
        var doc = new JsonObject
        {
            ["apiVersion"] = "outpost.dev/v1",
            ["kind"] = "Application",
            ["metadata"] = new JsonObject { ["name"] = request.NodeName, ["labels"] = labels },
            ["spec"] = new JsonObject { ["module"] = new JsonObject { ["digest"] = "sha256:" + new string('0', 64) } },
        };
        var errors = ManifestValidator.Validate(doc, allowModulePath: false)
            .Where(e => e.Field.StartsWith("metadata", StringComparison.Ordinal))
            .Select(e => e.ToString().Replace("metadata.name", "node name", StringComparison.Ordinal).Replace("metadata.labels", "labels", StringComparison.Ordinal))
            .ToList();
        if (tls.Authority is not null && request.Csr.IsEmpty)
        {
            errors.Add("this server issues node certificates: the join request needs a CSR (upgrade the agent)");
        }

        if (errors.Count > 0)
        {
            throw new RpcException(new Status(StatusCode.InvalidArgument, string.Join("; ", errors)));
        }

        // Sign before anything is written, so a bad CSR leaves no node and spends no use of the token.
        var certificate = tls.Authority is null ? null : Issue(request.Csr.ToByteArray(), request.NodeName);
        if (token.MaxUses is { } limit && !await store.TryUseTokenAsync(token.Id, ct))
        {
            joinGuard.Failed(address);
            throw new RpcException(new Status(StatusCode.Unauthenticated, $"join refused: the token has been used {limit} times, all it allows"));
        }

        var write = new ResourceWrite
        {
            Op = WriteOp.Upsert,
            Kind = ResourceKind.Node.Kind,
            Name = request.NodeName,
            Labels = nodeLabels,
        };
        var result = (await store.WriteAsync([write], ct))[0];
        var response = new JoinResponse { NodeUid = result.Resource.Uid };
        if (certificate is not null)
        {
            await store.RecordNodeCertificateAsync(request.NodeName, certificate.SerialNumber, certificate.NotAfter.ToUniversalTime(), ct);
            response.Certificate = Google.Protobuf.ByteString.CopyFrom(certificate.RawData);
            certificate.Dispose();
        }
        else
        {
            var issued = TokenCodec.Issue(TokenKind.Node, time.GetUtcNow(), subject: request.NodeName, description: "node credential");
            await store.CreateTokenAsync(issued.Record, ct);
            response.NodeToken = issued.Token;
        }

        LogJoined(logger, request.NodeName, context.Peer, result.Outcome);
        return response;
    }

    /// <summary>A fresh certificate for a node that proves it holds its current one.</summary>
    public override async Task<RenewResponse> Renew(RenewRequest request, ServerCallContext context)
    {
        ArgumentNullException.ThrowIfNull(request);
        ArgumentNullException.ThrowIfNull(context);
        var node = await AuthenticateNodeAsync(context);
        if (tls.Authority is null)
        {
            throw new RpcException(new Status(StatusCode.FailedPrecondition, "this server runs with --insecure-http and issues no certificates"));
        }

        using var certificate = Issue(request.Csr.ToByteArray(), node);
        var notAfter = certificate.NotAfter.ToUniversalTime();
        await store.RecordNodeCertificateAsync(node, certificate.SerialNumber, notAfter, context.CancellationToken);
        LogRenewed(logger, node, notAfter);
        await store.AppendEventAsync(new EventRecord(0, time.GetUtcNow(), ResourceKind.Node.Kind, node, "Normal", "CertificateRenewed",
            $"node {node} renewed its certificate, valid until {notAfter:u}"), context.CancellationToken);
        return new RenewResponse { Certificate = Google.Protobuf.ByteString.CopyFrom(certificate.RawData) };
    }

    private System.Security.Cryptography.X509Certificates.X509Certificate2 Issue(byte[] csr, string node)
    {
        try
        {
            return tls.Authority!.IssueNodeCertificate(csr, node, time.GetUtcNow(), options.NodeCertificateLifetime);
        }
        catch (FormatException ex)
        {
            throw new RpcException(new Status(StatusCode.InvalidArgument, ex.Message));
        }
    }

    public override async Task Sync(IAsyncStreamReader<AgentMessage> requestStream, IServerStreamWriter<ServerMessage> responseStream, ServerCallContext context)
    {
        ArgumentNullException.ThrowIfNull(requestStream);
        ArgumentNullException.ThrowIfNull(responseStream);
        ArgumentNullException.ThrowIfNull(context);
        var ct = context.CancellationToken;
        var node = await AuthenticateNodeAsync(context);
        if (!await requestStream.MoveNext(ct) || requestStream.Current.BodyCase != AgentMessage.BodyOneofCase.Hello)
        {
            throw new RpcException(new Status(StatusCode.InvalidArgument, "the first message on the sync stream must be a Hello"));
        }

        var hello = requestStream.Current.Hello;
        accounting.Received(node, "hello", requestStream.Current.CalculateSize());
        if (hello.NodeName != node)
        {
            throw new RpcException(new Status(StatusCode.PermissionDenied, $"this credential belongs to node '{node}', not '{hello.NodeName}'"));
        }

        // What the session needs of the hello, taken now: the hello itself is not kept.
        var appliedRevision = hello.AppliedRevision;
        var bucketCursors = new Dictionary<string, long>(hello.BucketCursors, StringComparer.Ordinal);
        var session = leases.Connect(node);
        LogConnected(logger, node, appliedRevision, context.Peer);
        using var sessionCts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        using var writeLock = new SemaphoreSlim(1, 1);
        Func<ServerMessage, CancellationToken, Task> write = WriteAsync; // one delegate for every loop, not one per loop
        async Task WriteAsync(ServerMessage message, CancellationToken token)
        {
            // Config updates and batch acks come from two loops; the stream takes one writer at a time.
            await writeLock.WaitAsync(token);
            try
            {
                await responseStream.WriteAsync(message, token);
                accounting.Sent(node, KindOf(message), message.CalculateSize());
            }
            finally
            {
                writeLock.Release();
            }
        }

        try
        {
            var beatStored = await StoreHelloAsync(node, hello, ct);

            using var wires = relay.Attach(node, session, write);
            mesh.Poke(); // the node's endpoints are reachable again
            var delivered = new Delivered();
            // Record batches go through a pipeline: the receive loop hands them on, the ingest loop
            // stores each durably and acks in order, decoding the next while this one commits, so
            // heartbeats never queue behind a commit.
            var received = Channel.CreateBounded<RecordBatch>(new BoundedChannelOptions(8) { SingleReader = true, SingleWriter = true });
            var ingest = IngestLoopAsync(node, received.Reader, write, sessionCts.Token);
            var receive = ReceiveAsync(node, session, (appliedRevision, beatStored), requestStream, write, delivered, received.Writer, sessionCts.Token);
            var send = SendAsync(node, appliedRevision, write, delivered, sessionCts.Token);
            var sendBuckets = SendBucketsAsync(node, bucketCursors, write, sessionCts.Token);
            var sendMesh = SendMeshAsync(node, write, sessionCts.Token);
            var first = await Task.WhenAny(receive, send, sendBuckets, sendMesh, ingest);
            await sessionCts.CancelAsync();
            await first; // surface the failure that ended the session
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested || sessionCts.IsCancellationRequested)
        {
            // The agent went away or the server is stopping.
        }
        finally
        {
            leases.Disconnect(node, session);
            mesh.Poke();
            LogDisconnected(logger, node);
        }
    }

    /// <summary>
    /// What the node's hello says, into its status. Its own method, so the hello (a kilobyte and
    /// more with the host's details) is not captured by the session's closures for its whole life.
    /// </summary>
    private Task<DateTimeOffset> StoreHelloAsync(string node, Hello hello, CancellationToken ct) =>
        UpdateStatusAsync(node, status =>
        {
            status["agentVersion"] = hello.AgentVersion;
            status["gatewayUrl"] = hello.GatewayUrl;
            status["meshAddress"] = hello.MeshAddress.Length == 0 ? null : hello.MeshAddress;
            if (hello.Info is { } info)
            {
                status["host"] = new JsonObject
                {
                    ["osImage"] = info.OsImage,
                    ["kernelVersion"] = info.KernelVersion,
                    ["architecture"] = info.Architecture,
                    ["operatingSystem"] = info.OperatingSystem,
                    ["hostname"] = info.Hostname,
                    ["internalIP"] = info.InternalIp,
                    ["cpus"] = info.Cpus,
                    ["memoryBytes"] = info.MemoryBytes,
                };
                // Agents before containers say nothing: they run Wasm only.
                status["runtimes"] = new JsonArray([.. (info.Runtimes.Count > 0 ? info.Runtimes : ["wasm"]).Select(r => (JsonNode)r)]);
                status["containerRuntimeProblem"] = info.Runtimes.Contains("runc") ? null
                    : info.ContainerRuntimeProblem.Length > 0 ? info.ContainerRuntimeProblem : "the agent runs no container runtime";
                status["ai"] = info.Runtimes.Contains("onnx") ? "available" : "unavailable";
                status["aiProblem"] = info.Runtimes.Contains("onnx") ? null
                    : info.AiProblem.Length > 0 ? info.AiProblem : "the agent predates WASI-NN";
            }
            status["appliedRevision"] = hello.AppliedRevision;
            status["lastHeartbeatTime"] = ResourceJson.FormatTimestamp(time.GetUtcNow());
        }, ct);

    /// <summary>The mesh registry, each time it changes (the first as soon as there is one), with the node's own site.</summary>
    private async Task SendMeshAsync(string node, Func<ServerMessage, CancellationToken, Task> write, CancellationToken ct)
    {
        long sent = 0;
        while (!ct.IsCancellationRequested)
        {
            // A session ending cancels the wait: the loop ends on it without an exception thrown per session.
            await mesh.WaitForNewerAsync(sent, ct).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            if (ct.IsCancellationRequested)
            {
                return;
            }

            var site = (await store.GetAsync(ResourceKind.Node.Kind, node, ct))?.Labels.GetValueOrDefault(Mesh.MeshRegistry.SiteLabel) ?? "";
            var (version, update) = mesh.For(node, site);
            await write(new ServerMessage { Mesh = update }, ct);
            sent = version;
        }
    }

    // atStart: the applied revision and beat time the node's status holds as the session starts (the hello wrote them, or found them current).
    private async Task ReceiveAsync(string node, long session, (long AppliedRevision, DateTimeOffset Beat) atStart, IAsyncStreamReader<AgentMessage> requestStream, Func<ServerMessage, CancellationToken, Task> write,
        Delivered delivered, ChannelWriter<RecordBatch> batches, CancellationToken ct)
    {
        // What this session last put in the node's status: a beat or an ack that changes none of it
        // (most beats of an idle node, and the ack of a node back in sync after a reconnect) touches
        // the lease alone, not the store, until the stored beat time is due again (see StoreBeatEvery).
        OutboxStatus? lastOutbox = null;
        var statusTouched = atStart.Beat;
        var appliedStored = atStart.AppliedRevision;
        while (await NextAsync(requestStream, ct))
        {
            var message = requestStream.Current;
            accounting.Received(node, KindNames.GetOrAdd(message.BodyCase, c => c.ToString().ToLowerInvariant()), message.CalculateSize());
            switch (message.BodyCase)
            {
                case AgentMessage.BodyOneofCase.Ack:
                    leases.Beat(node, session);
                    // The node holds what was sent through this revision: remember it for an incremental reconnect.
                    if (delivered.TakeThrough(message.Ack.Revision) is { } inventory)
                    {
                        await store.SaveNodeInventoryAsync(node, new NodeInventory(message.Ack.Revision, inventory), ct);
                    }

                    var ackedAt = time.GetUtcNow();
                    if (message.Ack.Revision == appliedStored && ackedAt - statusTouched < StoreBeatEvery)
                    {
                        break;
                    }

                    // Two fields of a status of a kilobyte or more: written in place, not read, parsed and written whole
                    // (a change sent to every node is an ack from each).
                    await SetStatusFieldsAsync(node, new JsonObject
                    {
                        ["appliedRevision"] = message.Ack.Revision,
                        ["lastHeartbeatTime"] = ResourceJson.FormatTimestamp(ackedAt),
                    }, ct);
                    (appliedStored, statusTouched) = (message.Ack.Revision, ackedAt);
                    break;
                case AgentMessage.BodyOneofCase.Probe:
                    relay.Answered(node, session, message.Probe.Sequence);
                    break;
                case AgentMessage.BodyOneofCase.Records:
                    leases.Beat(node, session);
                    await batches.WriteAsync(message.Records, ct);
                    break;
                case AgentMessage.BodyOneofCase.Heartbeat:
                    leases.Beat(node, session);
                    foreach (var traffic in message.Heartbeat.Traffic)
                    {
                        try
                        {
                            metrics.Record(node, traffic);
                        }
                        catch (InvalidDataException ex)
                        {
                            throw new RpcException(new Status(StatusCode.InvalidArgument, $"heartbeat traffic of app '{traffic.Name}': {ex.Message}"));
                        }

                        rollouts.RecordTraffic(node, traffic.Name, traffic.Generation, traffic.Requests, traffic.ServerErrors);
                    }

                    var beatAt = time.GetUtcNow();
                    if (message.Heartbeat.Usage is null && message.Heartbeat.Apps.Count == 0 && (message.Heartbeat.Outbox is null || Equals(message.Heartbeat.Outbox, lastOutbox))
                        && beatAt - statusTouched < StoreBeatEvery)
                    {
                        break;
                    }

                    lastOutbox = message.Heartbeat.Outbox ?? lastOutbox;
                    statusTouched = beatAt;
                    List<EventRecord>? failures = null; // rare: no allocation on an ordinary beat
                    await UpdateStatusAsync(node, status =>
                    {
                        status["lastHeartbeatTime"] = ResourceJson.FormatTimestamp(beatAt);
                        if (message.Heartbeat.Outbox is { } outbox)
                        {
                            status["outbox"] = new JsonObject
                            {
                                ["pendingRecords"] = outbox.PendingRecords,
                                ["pendingBytes"] = outbox.PendingBytes,
                                ["droppedTotal"] = outbox.DroppedTotal,
                                ["overflowPolicy"] = outbox.OverflowPolicy,
                                ["quotaBytes"] = outbox.QuotaBytes,
                            };
                        }

                        if (message.Heartbeat.Usage is { } usage)
                        {
                            var sample = MetricsWire.FromWire(usage);
                            metrics.RecordUsage(node, sample);
                            status["usage"] = Monitoring.MetricsRecorder.ToJson(sample);
                        }

                        if (message.Heartbeat.Apps.Count == 0)
                        {
                            return;
                        }

                        var apps = status["apps"] as JsonObject ?? [];
                        foreach (var app in message.Heartbeat.Apps)
                        {
                            if (app.State == "Removed")
                            {
                                apps.Remove(app.Name);
                                continue;
                            }

                            if (app.State == "Failed" && ((string?)apps[app.Name]?["state"] != "Failed" || (string?)apps[app.Name]?["message"] != app.Message))
                            {
                                // An app that cannot run on a node (a route another app took, a module the node
                                // refuses): on the app, so `get events` and `describe` show it, not only the node's status.
                                (failures ??= []).Add(new EventRecord(0, time.GetUtcNow(), ResourceKind.Application.Kind, app.Name, "Warning", "AppFailed",
                                    $"revision {app.Generation} failed on node {node}: {app.Message}"));
                            }

                            apps[app.Name] = new JsonObject
                            {
                                ["state"] = app.State,
                                ["message"] = app.Message,
                                ["generation"] = app.Generation,
                            };
                            if (app.FailedGeneration > 0)
                            {
                                apps[app.Name]!["failedGeneration"] = app.FailedGeneration;
                            }
                        }

                        status["apps"] = apps;
                    }, ct);
                    foreach (var failure in failures ?? [])
                    {
                        await store.AppendEventAsync(failure, ct);
                    }

                    if (message.Heartbeat.Apps.Count > 0)
                    {
                        rollouts.Signal(); // a node moved to a revision, failed it or rolled it back
                    }

                    break;
                case AgentMessage.BodyOneofCase.Kv:
                    leases.Beat(node, session);
                    var labels = (await store.GetAsync(ResourceKind.Node.Kind, node, ct))?.Labels ?? new Dictionary<string, string>();
                    KvAck kvAck;
                    try
                    {
                        kvAck = await buckets.MergeFromNodeAsync(node, labels, message.Kv, ct);
                    }
                    catch (UnauthorizedAccessException ex)
                    {
                        throw new RpcException(new Status(StatusCode.PermissionDenied, ex.Message));
                    }
                    catch (InvalidDataException ex)
                    {
                        throw new RpcException(new Status(StatusCode.InvalidArgument, ex.Message));
                    }

                    // Ack only after the merge is durable: the edge forgets the writes on ack.
                    await write(new ServerMessage { KvAck = kvAck }, ct);
                    break;
                case AgentMessage.BodyOneofCase.Logs:
                    leases.Beat(node, session);
                    var lines = DecodeLogs(node, message.Logs);
                    var stored = await store.IngestLogsAsync(lines, ct);
                    logs.Record(node, stored, message.Logs.DroppedTotal);
                    // Ack only after the lines are durable: the edge deletes on ack.
                    await write(new ServerMessage { LogAck = new LogAck { LastSequence = message.Logs.LastSequence, Stored = stored.Stored, Duplicates = stored.Duplicates } }, ct);
                    break;
                default:
                    throw new RpcException(new Status(StatusCode.InvalidArgument, $"unexpected {message.BodyCase} message after Hello"));
            }
        }
    }

    /// <summary>
    /// What a session sent through each revision not yet acked, for the inventory saved at the
    /// ack: one or two entries at a time, so a list under a lock (a concurrent dictionary per
    /// session cost ~0.8 KB a node).
    /// </summary>
    private sealed class Delivered
    {
        private readonly List<(long Revision, Dictionary<string, long> Inventory)> _sent = new(2);

        public void Add(long revision, Dictionary<string, long> inventory)
        {
            lock (_sent)
            {
                _sent.Add((revision, inventory));
            }
        }

        /// <summary>What was sent through <paramref name="revision"/>, forgetting it and everything older; null when that revision was not sent here.</summary>
        public Dictionary<string, long>? TakeThrough(long revision)
        {
            lock (_sent)
            {
                Dictionary<string, long>? inventory = null;
                foreach (var (sent, what) in _sent)
                {
                    inventory = sent == revision ? what : inventory;
                }

                if (inventory is not null)
                {
                    var kept = 0;
                    for (var i = 0; i < _sent.Count; i++)
                    {
                        if (_sent[i].Revision > revision)
                        {
                            _sent[kept++] = _sent[i];
                        }
                    }

                    _sent.RemoveRange(kept, _sent.Count - kept);
                }

                return inventory;
            }
        }
    }

    /// <summary>
    /// Stores each batch durably and acks it, in order. The next batch, when one is waiting, is
    /// decoded while this one commits (one loop and one channel a session: a stage of its own for
    /// decoding cost every connected node ~0.8 KB).
    /// </summary>
    private async Task IngestLoopAsync(string node, ChannelReader<RecordBatch> batches, Func<ServerMessage, CancellationToken, Task> write, CancellationToken ct)
    {
        RecordBatch? batch = null;
        IngestRecord[]? records = null;
        while (true)
        {
            if (batch is null)
            {
                if (!await batches.WaitToReadAsync(ct) || !batches.TryRead(out batch))
                {
                    return;
                }

                records = Decode(batch);
            }

            var storing = store.IngestAsync(node, records!, ct);
            var next = batches.TryRead(out var waiting) ? waiting : null;
            IngestRecord[]? nextRecords = null;
            RpcException? unreadable = null;
            try
            {
                nextRecords = next is null ? null : Decode(next);
            }
            catch (RpcException ex)
            {
                unreadable = ex; // after this batch's ack: the one in flight is good
            }

            var result = await storing;
            // Ack only after the batch is durable: the edge deletes on ack.
            await write(new ServerMessage { BatchAck = new BatchAck { LastSequence = batch.LastSequence, Stored = result.Stored, Duplicates = result.Duplicates } }, ct);
            if (unreadable is not null)
            {
                System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(unreadable);
            }

            (batch, records) = (next, nextRecords);
        }
    }

    /// <summary>Decodes a batch of log lines; a malformed batch ends the session with a clear status.</summary>
    private static List<LogRecord> DecodeLogs(string node, LogBatch batch)
    {
        LogList list;
        try
        {
            list = LogList.Parser.ParseFrom(BatchCodec.Decompress(batch.Codec, batch.Data.Span));
        }
        catch (Exception ex) when (ex is InvalidDataException or Google.Protobuf.InvalidProtocolBufferException)
        {
            throw new RpcException(new Status(StatusCode.InvalidArgument, $"log batch {batch.FirstSequence}..{batch.LastSequence} is unreadable: {ex.Message}"));
        }

        var lines = list.Lines;
        if (batch.Stream.Length is 0 or > 64 || lines.Count == 0 || lines[0].Sequence != batch.FirstSequence || lines[^1].Sequence != batch.LastSequence
            || lines.Zip(lines.Skip(1)).Any(p => p.Second.Sequence <= p.First.Sequence))
        {
            throw new RpcException(new Status(StatusCode.InvalidArgument, $"log batch {batch.FirstSequence}..{batch.LastSequence} does not match its header, has no stream or is out of order"));
        }

        return [.. lines.Select(l => new LogRecord(0, node, batch.Stream, l.Sequence, DateTimeOffset.FromUnixTimeMilliseconds(l.TimeUnixMs), l.Level, l.App, l.Revision, l.Message))];
    }

    /// <summary>Decodes one batch; a malformed batch ends the session with a clear status.</summary>
    private static IngestRecord[] Decode(RecordBatch batch)
    {
        RecordList list;
        try
        {
            list = RecordList.Parser.ParseFrom(BatchCodec.Decompress(batch.Codec, batch.Data.Span));
        }
        catch (Exception ex) when (ex is InvalidDataException or Google.Protobuf.InvalidProtocolBufferException)
        {
            throw new RpcException(new Status(StatusCode.InvalidArgument, $"record batch {batch.FirstSequence}..{batch.LastSequence} is unreadable: {ex.Message}"));
        }

        var records = list.Records;
        if (records.Count != batch.Count || records.Count == 0 || records[0].Sequence != batch.FirstSequence || records[^1].Sequence != batch.LastSequence
            || records.Zip(records.Skip(1)).Any(p => p.Second.Sequence <= p.First.Sequence))
        {
            throw new RpcException(new Status(StatusCode.InvalidArgument, $"record batch {batch.FirstSequence}..{batch.LastSequence} does not match its header or is out of order"));
        }

        return [.. records.Select(r => new IngestRecord(r.Sequence, r.Topic, r.Source, r.Payload.ToByteArray(), DateTimeOffset.FromUnixTimeMilliseconds(r.CreatedUnixMs)))];
    }

    /// <summary>
    /// Sends the node its desired state. A node that reconnects with the revision it last
    /// acked gets only what changed since (against the inventory saved at that ack), unless
    /// history was compacted past it or the inventory does not match: then a full snapshot.
    /// </summary>
    private async Task SendAsync(string node, long appliedRevision, Func<ServerMessage, CancellationToken, Task> write,
        Delivered delivered, CancellationToken ct)
    {
        Dictionary<string, long>? sent = null;
        if (appliedRevision > 0
            && await store.GetNodeInventoryAsync(node, ct) is { } inventory
            && inventory.Revision == appliedRevision
            && appliedRevision > await store.GetCompactedRevisionAsync(ct))
        {
            sent = new Dictionary<string, long>(inventory.Resources, StringComparer.Ordinal);
        }

        var snapshot = sent is null;
        var first = true; // the first update goes out even when empty: it tells the node it is in sync
        sent ??= new Dictionary<string, long>(StringComparer.Ordinal);
        LogSession(logger, node, appliedRevision, snapshot ? "full snapshot" : "delta since its acked revision");
        StoredResource? nodeResource = null;
        var nodeReadAt = 0L;
        while (!ct.IsCancellationRequested)
        {
            // The revision first: everything read after it is at least this new. The feed's is
            // committed and visible (and may trail the store's by a change not yet announced,
            // whose announcement wakes this loop again): no store read per node per change.
            var revision = store.Changes.Latest;
            // The node is read again only when it was written since: a change sent to every node
            // is not also a read of every node.
            if (nodeResource is null || !router.NodeUnchanged(node, nodeReadAt, revision))
            {
                nodeReadAt = revision;
                nodeResource = NodeDesiredState.PlacementView(await store.GetAsync(ResourceKind.Node.Kind, node, ct)
                    ?? throw new RpcException(new Status(StatusCode.PermissionDenied, $"node '{node}' has been deleted; join it again")));
            }

            var desired = await desiredState.ForNodeAsync(nodeResource, revision, ct);
            var (upserts, deletes) = DesiredStateDiff.Compute(sent, desired);
            if (first || snapshot || upserts.Count > 0 || deletes.Count > 0)
            {
                var update = new ConfigUpdate { Revision = revision, Snapshot = snapshot };
                foreach (var resource in snapshot ? desired : upserts)
                {
                    update.Upserts.Add(new Resource
                    {
                        Kind = resource.Kind,
                        Name = resource.Name,
                        ResourceVersion = resource.ResourceVersion,
                        Generation = resource.Generation,
                        // Secrets travel opened, only to the nodes they are placed on, inside mutual TLS.
                        Json = resource.Kind == ResourceKind.Secret.Kind ? view.Render(resource, reveal: true).ToJsonString() : desiredState.WireJson(resource),
                    });
                }

                foreach (var key in snapshot ? [] : deletes)
                {
                    var slash = key.IndexOf('/', StringComparison.Ordinal);
                    update.Deletes.Add(new ResourceRef { Kind = key[..slash], Name = key[(slash + 1)..] });
                }

                sent = desired.ToDictionary(r => DesiredStateDiff.Key(r.Kind, r.Name), r => r.ResourceVersion, StringComparer.Ordinal);
                delivered.Add(revision, sent);
                await write(new ServerMessage { Config = update }, ct);
                snapshot = false;
                first = false;
            }

            await router.WaitAsync(node, revision, ChangeRouter.Interest.DesiredState, ct).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }
    }

    /// <summary>
    /// The agent's next message, or false once its stream has ended: closed, reset, or its
    /// connection gone. A node going away ends the session like any other end, not as a failure
    /// of the call logged with its stack: in a reconnect storm that was thousands of them.
    /// </summary>
    private static async Task<bool> NextAsync(IAsyncStreamReader<AgentMessage> requestStream, CancellationToken ct)
    {
        try
        {
            return await requestStream.MoveNext(ct);
        }
        catch (IOException ex) when (ex is not Google.Protobuf.InvalidProtocolBufferException)
        {
            return false; // (a message that does not parse still fails the call, and says why)
        }
    }

    /// <summary>Most bytes of values in one KvUpdate.</summary>
    private const int KvUpdateBytes = 1024 * 1024;

    /// <summary>
    /// Sends the node the cloud's changes of every two-way and cloud-to-edge bucket placed on
    /// it, from the cursor it reported (0 for a bucket it never had), then each change as it
    /// happens. A node's own writes are not echoed back once it holds the bucket.
    /// </summary>
    private async Task SendBucketsAsync(string node, Dictionary<string, long> cursors, Func<ServerMessage, CancellationToken, Task> write, CancellationToken ct)
    {
        while (!ct.IsCancellationRequested)
        {
            var configRevision = await store.GetRevisionAsync(ct);
            var bucketRevision = await store.GetBucketRevisionAsync(ct);
            var placed = await BucketsDownAsync(node, ct);
            foreach (var gone in cursors.Keys.Except(placed.Select(b => b.Name), StringComparer.Ordinal).ToList())
            {
                cursors.Remove(gone);
            }

            foreach (var (name, spec) in placed)
            {
                var cursor = cursors.GetValueOrDefault(name);
                var fresh = cursor == 0; // a node new to the bucket gets everything, its own writes included
                while (true)
                {
                    var changes = await store.ListBucketChangesAsync(name, "", cursor, 512, ct);
                    if (changes.Count == 0)
                    {
                        break;
                    }

                    var update = new KvUpdate { Bucket = name, ConflictPolicy = BucketSpec.Format(spec.ConflictPolicy) };
                    var bytes = 0;
                    foreach (var change in changes)
                    {
                        if (fresh || change.Version.Stamp.Origin != node)
                        {
                            update.Entries.Add(KvWire.ToWire(name, change.Key, change.Version, change.Base));
                            bytes += change.Version.Value?.Length ?? 0;
                        }

                        update.Revision = change.Revision;
                        if (bytes >= KvUpdateBytes)
                        {
                            await write(new ServerMessage { KvUpdate = update }, ct);
                            update = new KvUpdate { Bucket = name, ConflictPolicy = update.ConflictPolicy, Revision = update.Revision };
                            bytes = 0;
                        }
                    }

                    if (update.Entries.Count > 0)
                    {
                        await write(new ServerMessage { KvUpdate = update }, ct);
                    }

                    cursor = changes[^1].Revision;
                }

                cursors[name] = cursor;
            }

            // Whichever comes first; the other wait is then dropped, not left on its feed until it moves.
            using var wait = CancellationTokenSource.CreateLinkedTokenSource(ct);
            await Task.WhenAny(router.WaitAsync(node, configRevision, ChangeRouter.Interest.Buckets, wait.Token), store.BucketChanges.WaitAfterAsync(bucketRevision, wait.Token));
            await wait.CancelAsync();
        }
    }

    /// <summary>
    /// The buckets placed on the node that sync down. Its own method, so the node's labels it reads
    /// are not kept in the loop's state between changes.
    /// </summary>
    private async Task<List<(string Name, BucketSpec Spec)>> BucketsDownAsync(string node, CancellationToken ct)
    {
        var labels = (await store.GetAsync(ResourceKind.Node.Kind, node, ct))?.Labels ?? new Dictionary<string, string>();
        return [.. (await store.ListAsync(ResourceKind.Bucket.Kind, ct)).Items
            .Where(b => DesiredStateDiff.Targets(b, labels))
            .Select(b => (b.Name, Spec: BucketSpec.FromJson(b.Spec())))
            .Where(b => b.Spec.SyncsDown)];
    }

    private static readonly System.Collections.Concurrent.ConcurrentDictionary<AgentMessage.BodyOneofCase, string> KindNames = new();

    private static string KindOf(ServerMessage message) => message.BodyCase switch
    {
        ServerMessage.BodyOneofCase.Config => message.Config.Snapshot ? "config-snapshot" : "config-delta",
        ServerMessage.BodyOneofCase.BatchAck => "batch-ack",
        ServerMessage.BodyOneofCase.KvAck => "kv-ack",
        ServerMessage.BodyOneofCase.KvUpdate => "kv-update",
        _ => message.BodyCase.ToString().ToLowerInvariant(),
    };

    public override async Task FetchBlob(FetchBlobRequest request, IServerStreamWriter<BlobChunk> responseStream, ServerCallContext context)
    {
        ArgumentNullException.ThrowIfNull(request);
        ArgumentNullException.ThrowIfNull(responseStream);
        ArgumentNullException.ThrowIfNull(context);
        var ct = context.CancellationToken;
        var node = await AuthenticateNodeAsync(context);
        // A node may fetch only the modules and image blobs of apps placed on it.
        var nodeResource = await store.GetAsync(ResourceKind.Node.Kind, node, ct);
        var placed = false;
        if (nodeResource is not null)
        {
            foreach (var app in (await desiredState.ForNodeAsync(nodeResource, await store.GetRevisionAsync(ct), ct))
                .Where(r => r.Kind == ResourceKind.Application.Kind).Select(r => ApplicationSpec.FromJson(r.Spec())))
            {
                if (app.ArtifactDigest == request.Digest
                    || app.ExtraBlobs.Contains(request.Digest)
                    || (app.IsContainer && app.ImageDigest is { } image && (await imageBlobs.OfAsync(image, ct)).Contains(request.Digest)))
                {
                    placed = true;
                    break;
                }
            }
        }

        if (!placed)
        {
            LogBlobDenied(logger, node, request.Digest);
            throw new RpcException(new Status(StatusCode.PermissionDenied, $"node '{node}' runs no app with module, files, model or image blob {request.Digest}"));
        }

        var size = await store.GetBlobSizeAsync(request.Digest, ct)
            ?? throw new RpcException(new Status(StatusCode.NotFound, $"blob {request.Digest} not found"));
        if (request.Offset < 0 || request.Offset > size)
        {
            throw new RpcException(new Status(StatusCode.OutOfRange, $"offset {request.Offset} is outside blob of {size} bytes"));
        }

        // Read from the store a slab at a time (a store read has a fixed cost: a connection, a query),
        // sent in chunks small enough that a cut transfer loses little and resumes where it stopped.
        var slab = new byte[SlabSize];
        var offset = request.Offset;
        do
        {
            var n = await store.ReadBlobAsync(request.Digest, offset, slab, ct);
            for (var sent = 0; sent < n || (n == 0 && sent == 0); sent += ChunkSize)
            {
                var length = Math.Min(ChunkSize, n - sent);
                var chunk = new BlobChunk
                {
                    TotalSize = size,
                    Offset = offset + sent,
                    Data = Google.Protobuf.ByteString.CopyFrom(slab, sent, length),
                };
                await responseStream.WriteAsync(chunk, ct);
                accounting.Sent(node, "blob", chunk.CalculateSize());
                if (n == 0)
                {
                    break;
                }
            }

            offset += n;
            if (n == 0)
            {
                break;
            }
        }
        while (offset < size);
    }

    /// <summary>A node answers an OpenWire: the wire is handed to the server side that asked for it.</summary>
    public override async Task Wire(IAsyncStreamReader<WireFrame> requestStream, IServerStreamWriter<WireFrame> responseStream, ServerCallContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var node = await AuthenticateNodeAsync(context);
        if (context.RequestHeaders.GetValue(Mesh.MeshDialer.DialHeader) is { } service)
        {
            await dialer.DialAsync(node, service, requestStream, responseStream, context);
            return;
        }

        await relay.AcceptAsync(node, requestStream, responseStream, context);
    }

    /// <summary>
    /// Who is calling: the node named by its client certificate (issued by this server's CA,
    /// still on record, its node not deleted), or under --insecure-http its bearer credential.
    /// Nothing the agent says about itself counts.
    /// </summary>
    private async Task<string> AuthenticateNodeAsync(ServerCallContext context)
    {
        var ct = context.CancellationToken;
        if (tls.Authority is not null)
        {
            var certificate = context.GetHttpContext().Connection.ClientCertificate
                ?? throw new RpcException(new Status(StatusCode.Unauthenticated, "a node certificate is required: join the node with a join token"));
            var name = certificate.GetNameInfo(System.Security.Cryptography.X509Certificates.X509NameType.SimpleName, forIssuer: false);
            if (string.IsNullOrEmpty(name) || !await store.IsNodeCertificateCurrentAsync(name, certificate.SerialNumber, ct)
                || await store.GetAsync(ResourceKind.Node.Kind, name, ct) is null)
            {
                throw new RpcException(new Status(StatusCode.Unauthenticated, $"node certificate for '{name}' is revoked: the node was deleted; join it again with a new join token"));
            }

            return name;
        }

        var header = context.RequestHeaders.GetValue("authorization") ?? "";
        var token = header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase) ? header[7..] : "";
        if (!TokenCodec.TryParse(token, out _, out var id, out _))
        {
            throw new RpcException(new Status(StatusCode.Unauthenticated, "a node credential is required"));
        }

        var reason = await CheckTokenAsync(token, TokenKind.Node, ct);
        if (reason is not null)
        {
            throw new RpcException(new Status(StatusCode.Unauthenticated, $"node credential refused: {reason}"));
        }

        var record = await store.GetTokenAsync(id, ct);
        return record!.Subject!;
    }

    private async Task<string?> CheckTokenAsync(string token, TokenKind kind, CancellationToken ct)
    {
        if (!TokenCodec.TryParse(token, out var parsedKind, out var id, out var secret))
        {
            return "the token is malformed";
        }

        if (parsedKind != kind)
        {
            return $"a {parsedKind.ToString().ToLowerInvariant()} token cannot be used here; a {kind.ToString().ToLowerInvariant()} token is required";
        }

        var record = await store.GetTokenAsync(id, ct);
        if (record is null || !TokenCodec.Verify(record, kind, secret, time.GetUtcNow()))
        {
            return "the token is unknown, revoked or expired";
        }

        return null;
    }

    /// <summary>
    /// How stale the stored lastHeartbeatTime may get before a beat writes it again. The views
    /// take the live time from the lease; the stored one is for a restarted server (and other
    /// replicas), so a beat that changes nothing else writes nothing: ten thousand idle nodes
    /// beating every 10 s would otherwise be a thousand store writes a second.
    /// </summary>
    private static readonly TimeSpan StoreBeatEvery = TimeSpan.FromSeconds(60);

    /// <summary>Sets top-level fields of the node's status, keeping the others, without reading it.</summary>
    private async Task SetStatusFieldsAsync(string node, JsonObject fields, CancellationToken ct)
    {
        try
        {
            await store.SetStatusFieldsAsync(ResourceKind.Node.Kind, node, fields, ct);
        }
        catch (StoreException)
        {
            // Deleted meanwhile: the send loop ends the session.
        }
    }

    /// <summary>
    /// Reads the node's status, changes it and writes it back unless nothing but a fresh stored
    /// beat time would change; returns the beat time the store holds after (MinValue: no node).
    /// </summary>
    private async Task<DateTimeOffset> UpdateStatusAsync(string node, Action<JsonObject> mutate, CancellationToken ct)
    {
        var resource = await store.GetAsync(ResourceKind.Node.Kind, node, ct);
        if (resource is null)
        {
            return DateTimeOffset.MinValue;
        }

        var status = resource.StatusJson is null ? [] : JsonNode.Parse(resource.StatusJson)!.AsObject();
        var storedBeat = status["lastHeartbeatTime"]?.GetValue<string>();
        mutate(status);
        var now = time.GetUtcNow();
        if (storedBeat is not null && DateTimeOffset.TryParse(storedBeat, System.Globalization.CultureInfo.InvariantCulture, out var at) && now - at < StoreBeatEvery)
        {
            status["lastHeartbeatTime"] = storedBeat;
            if (status.ToJsonString() == resource.StatusJson)
            {
                return at;
            }

            status["lastHeartbeatTime"] = ResourceJson.FormatTimestamp(now);
        }

        try
        {
            await store.UpdateStatusAsync(ResourceKind.Node.Kind, node, status.ToJsonString(), ct);
        }
        catch (StoreException)
        {
            // Deleted meanwhile: the send loop ends the session.
        }

        return now;
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Node '{Node}' renewed its certificate (valid until {NotAfter:u})")]
    private static partial void LogRenewed(ILogger logger, string node, DateTime notAfter);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Node '{Node}' asked for module {Digest}, which no app placed on it uses: denied")]
    private static partial void LogBlobDenied(ILogger logger, string node, string digest);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Join from {Address} for node '{Node}' refused unread: too many failed joins from there")]
    private static partial void LogJoinThrottled(ILogger logger, string node, string address);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Join refused for node '{Node}' from {Peer}: {Reason}")]
    private static partial void LogJoinRefused(ILogger logger, string node, string peer, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "Node '{Node}' joined from {Peer} ({Outcome})")]
    private static partial void LogJoined(ILogger logger, string node, string peer, WriteOutcome outcome);

    [LoggerMessage(Level = LogLevel.Information, Message = "Node '{Node}' connected at applied revision {Revision} from {Peer}")]
    private static partial void LogConnected(ILogger logger, string node, long revision, string peer);

    [LoggerMessage(Level = LogLevel.Information, Message = "Node '{Node}' resumes from revision {Revision}: {Mode}")]
    private static partial void LogSession(ILogger logger, string node, long revision, string mode);

    [LoggerMessage(Level = LogLevel.Information, Message = "Node '{Node}' disconnected")]
    private static partial void LogDisconnected(ILogger logger, string node);
}
