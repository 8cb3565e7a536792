using System.Diagnostics;
using System.Net;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Text.Json.Nodes;
using Grpc.Core;
using Grpc.Net.Client;
using Outpost.Core.Security;
using Outpost.Protocol;

namespace Outpost.IntegrationTests;

/// <summary>
/// Negative tests of the security model with real processes: each asserts the refusal and
/// that nothing changed.
/// </summary>
[Trait("Category", "aot")]
public sealed class SecurityTests
{
    private static async Task<(int Exit, string Output)> RunAgentToExitAsync(Fleet fleet, string name, string token)
    {
        await using var agent = OutpostProcess.Start(fleet.Home, "agent", "--server", fleet.ServerUrl, "--token", token,
            "--name", name, "--data-dir", fleet.AgentDir(name), "--gateway", "127.0.0.1:0");
        var exit = await agent.WaitForExitAsync(OutpostProcess.ClientTimeout);
        return (exit, agent.Output);
    }

    /// <summary>A deadline for one gRPC call: a refusal comes at once, a hang fails loudly (DeadlineExceeded) instead of never.</summary>
    private static DateTime Deadline => DateTime.UtcNow + Fleet.Patience;

    private static async Task<List<string>> NodeNamesAsync(Fleet fleet) =>
        [.. (await fleet.GetJsonAsync("get", "nodes"))["items"]!.AsArray().Select(n => (string)n!["metadata"]!["name"]!)];

    /// <summary>A gRPC channel to the server that trusts its CA and presents the given node's certificate (if any), or <paramref name="certificate"/>.</summary>
    private static GrpcChannel Channel(Fleet fleet, string? node, X509Certificate2? certificate = null)
    {
        var config = Core.Api.ClientConfig.Parse(File.ReadAllText(fleet.ConfigPath), fleet.ConfigPath);
        var bundle = TrustBundle.FromPem(config.CertificateAuthorityPem!);
        var ssl = new System.Net.Security.SslClientAuthenticationOptions { RemoteCertificateValidationCallback = bundle.ServerValidator() };
        if (node is not null)
        {
            var dir = fleet.AgentDir(node);
            using var pem = X509Certificate2.CreateFromPemFile(Path.Combine(dir, "node.crt"), Path.Combine(dir, "node.key"));
            ssl.ClientCertificates = [X509CertificateLoader.LoadPkcs12(pem.Export(X509ContentType.Pkcs12), null)];
        }
        else if (certificate is not null)
        {
            ssl.ClientCertificates = [certificate];
        }

        return GrpcChannel.ForAddress(fleet.ServerUrl, new GrpcChannelOptions { HttpHandler = new SocketsHttpHandler { SslOptions = ssl }, DisposeHttpClient = true });
    }

    [Fact]
    public async Task Api_NeedsAToken_ViewersCannotMutate_AndMutationsAreAudited()
    {
        await using var fleet = new Fleet();
        await fleet.StartServerAsync();
        var (code, viewer) = await fleet.ClientAsync("token", "create", "--api", "--role", "viewer", "--description", "dashboard");
        Assert.True(code == 0, viewer);
        viewer = viewer.Trim();

        using (var anonymous = new HttpRequestMessage(HttpMethod.Get, fleet.ServerUrl + "/api/v1/nodes"))
        {
            anonymous.Headers.Authorization = null;
            using var response = await fleet.ApiSendAsync(anonymous, authenticate: false);
            Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        }

        (code, var output) = await fleet.ClientAsync("--token", viewer, "--server", fleet.ServerUrl, "apply", "-f", fleet.WriteManifest("a.yaml", Fleet.HelloApp));
        Assert.Equal(1, code);
        Assert.Contains("Forbidden", output, StringComparison.Ordinal);
        (code, output) = await fleet.ClientAsync("--token", viewer, "--server", fleet.ServerUrl, "get", "apps");
        Assert.True(code == 0, output);
        Assert.Contains("No applications found", output, StringComparison.Ordinal);

        (code, output) = await fleet.ClientAsync("apply", "-f", fleet.WriteManifest("a.yaml", Fleet.HelloApp));
        Assert.True(code == 0, output);
        var audit = (await fleet.GetJsonAsync("get", "audit"))["items"]!.AsArray().Select(i => i!.AsObject()).ToList();
        Assert.Contains(audit, e => (string?)e["role"] == "viewer" && (int)e["status"]! == 403 && ((string)e["actor"]!).Contains("dashboard", StringComparison.Ordinal));
        Assert.Contains(audit, e => (string?)e["role"] == "admin" && (int)e["status"]! == 200 && ((string?)e["detail"] ?? "").Contains("Application/hello created", StringComparison.Ordinal));
        (code, output) = await fleet.ClientAsync("get", "audit");
        Assert.Contains("Application/hello created", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task JoinTokens_ExpiredRevokedTamperedOrUsedUp_AreRefused_AndCreateNoNode()
    {
        await using var fleet = new Fleet();
        await fleet.StartServerAsync();
        var (_, expiring) = await fleet.ClientAsync("token", "create", "--ttl", "1s");
        var (_, revoked) = await fleet.ClientAsync("token", "create", "--description", "to revoke");
        var (_, once) = await fleet.ClientAsync("token", "create", "--uses", "1", "--labels", "site=berlin");
        var list = (await fleet.ClientAsync("token", "list", "-o", "json")).Output;
        var items = JsonNode.Parse(list)!["items"]!.AsArray();
        var revokedId = items.Single(t => (string?)t!["description"] == "to revoke")!["metadata"]!["name"]!.ToString();
        // The server's own expiry time for the 1 s token (shown to the second, so one more second covers the truncation).
        var expiresAt = DateTimeOffset.Parse((string)items.Single(t => t!["expiresAt"] is not null)!["expiresAt"]!, System.Globalization.CultureInfo.InvariantCulture).AddSeconds(1);
        Assert.Equal(0, (await fleet.ClientAsync("token", "revoke", revokedId)).ExitCode);
        Assert.DoesNotContain(revoked.Trim().Split('_')[2], (await fleet.ClientAsync("token", "list")).Output, StringComparison.Ordinal); // secrets are never listed
        var parts = once.Trim().Split('_');
        parts[2] = new string(parts[2].Reverse().ToArray());
        var tampered = string.Join('_', parts);
        await Eventually.UntilAsync(() => DateTimeOffset.UtcNow, now => now > expiresAt, Fleet.Patience, $"the first token to expire at {expiresAt:O}");

        foreach (var (name, token) in new[] { ("expired", expiring), ("revoked", revoked), ("tampered", tampered) })
        {
            var (exit, output) = await RunAgentToExitAsync(fleet, name, token.Trim());
            Assert.True(exit != 0, output);
            Assert.Contains("refused to let node", output, StringComparison.Ordinal);
        }

        var (firstExit, firstOutput) = (0, "");
        var (agent, _) = await fleet.StartAgentAsync("first", once.Trim());
        (firstExit, firstOutput) = await RunAgentToExitAsync(fleet, "second", once.Trim());
        Assert.True(firstExit != 0, firstOutput);
        Assert.Contains("used 1 times", firstOutput, StringComparison.Ordinal);

        Assert.Equal(["first"], await NodeNamesAsync(fleet));
        Assert.Equal("berlin", (string?)(await fleet.ApiGetAsync("/api/v1/nodes/first"))["metadata"]!["labels"]!["site"]);
        Assert.False(agent.HasExited);
    }

    [Fact]
    public async Task AgentWithTheWrongCaFingerprint_RefusesToConnect_AndSendsNoToken()
    {
        await using var fleet = new Fleet();
        await fleet.StartServerAsync();
        var token = (await fleet.CreateJoinTokenAsync()).Split('_');
        token[3] = new string(token[3].Select(c => c == 'a' ? 'b' : 'a').ToArray());

        var (exit, output) = await RunAgentToExitAsync(fleet, "fooled", string.Join('_', token));

        Assert.True(exit != 0, output);
        Assert.Contains("refusing to connect", output, StringComparison.Ordinal);
        Assert.DoesNotContain("Join refused", fleet.Server!.Output, StringComparison.Ordinal); // the token never reached the server
        Assert.Empty(await NodeNamesAsync(fleet));
        Assert.False(File.Exists(Path.Combine(fleet.AgentDir("fooled"), "ca.crt")));
    }

    [Fact]
    public async Task NodeA_CannotClaimToBeNodeB_NorFetchModulesOfAppsNotPlacedOnIt()
    {
        await using var fleet = new Fleet();
        await fleet.StartServerAsync();
        var token = await fleet.CreateJoinTokenAsync();
        var (_, gatewayA) = await fleet.StartAgentAsync("edge-a", token, labels: "site=a");
        var (_, gatewayB) = await fleet.StartAgentAsync("edge-b", token, labels: "site=b");
        var (code, output) = await fleet.ClientAsync("apply", "-f", fleet.WriteManifest("b-only.yaml", Fleet.HelloApp + """

              placement:
                nodeSelector:
                  site: b
            """));
        Assert.True(code == 0, output);
        await Fleet.WaitForStatusAsync(gatewayB + "/hello", HttpStatusCode.OK, Fleet.Patience);
        var digest = (string)(await fleet.ApiGetAsync("/apis/outpost.dev/v1/applications/hello"))["spec"]!["module"]!["digest"]!;

        using var channel = Channel(fleet, "edge-a");
        var client = new EdgeSync.EdgeSyncClient(channel);
        var denied = await Assert.ThrowsAsync<RpcException>(async () =>
        {
            using var call = client.FetchBlob(new FetchBlobRequest { Digest = digest }, deadline: Deadline);
            await call.ResponseStream.MoveNext(CancellationToken.None);
        });
        Assert.Equal(StatusCode.PermissionDenied, denied.StatusCode);

        var forged = await Assert.ThrowsAsync<RpcException>(() => HelloAsync(client, "edge-b"));
        Assert.Equal(StatusCode.PermissionDenied, forged.StatusCode);
        Assert.Contains("belongs to node 'edge-a'", forged.Status.Detail, StringComparison.Ordinal);

        // Without any certificate nothing is served at all.
        using var anonymous = Channel(fleet, null);
        var refused = await Assert.ThrowsAsync<RpcException>(async () =>
        {
            using var call = new EdgeSync.EdgeSyncClient(anonymous).FetchBlob(new FetchBlobRequest { Digest = digest }, deadline: Deadline);
            await call.ResponseStream.MoveNext(CancellationToken.None);
        });
        Assert.Equal(StatusCode.Unauthenticated, refused.StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await Fleet.GetAsync(gatewayA + "/hello")).Status);

        // A certificate for edge-b from a CA of the caller's own making: the handshake itself fails.
        using var impostor = Channel(fleet, null, SelfIssuedNodeCertificate("edge-b"));
        var handshake = await Assert.ThrowsAsync<RpcException>(async () =>
        {
            using var call = new EdgeSync.EdgeSyncClient(impostor).FetchBlob(new FetchBlobRequest { Digest = digest }, deadline: Deadline);
            await call.ResponseStream.MoveNext(CancellationToken.None);
        });
        // TLS 1.3 lets the client finish its side before the server checks its certificate, so the refusal
        // reaches the client either while it connects (Unavailable) or as the connection breaks under its
        // first read (Internal). Either way it comes from the transport, never as a status the server answered.
        Assert.True(handshake.StatusCode is StatusCode.Unavailable or StatusCode.Internal, handshake.ToString());
        Assert.NotNull(handshake.Status.DebugException);
    }

    /// <summary>A client-authentication certificate named for a node, issued by a fresh CA the server has never seen.</summary>
    private static X509Certificate2 SelfIssuedNodeCertificate(string node)
    {
        using var caKey = System.Security.Cryptography.ECDsa.Create(System.Security.Cryptography.ECCurve.NamedCurves.nistP256);
        var caRequest = new System.Security.Cryptography.X509Certificates.CertificateRequest("CN=not the fleet ca", caKey, System.Security.Cryptography.HashAlgorithmName.SHA256);
        caRequest.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        var now = DateTimeOffset.UtcNow; // one reading: the certificate may not outlive its issuer
        using var ca = caRequest.CreateSelfSigned(now.AddMinutes(-1), now.AddDays(1));
        using var key = System.Security.Cryptography.ECDsa.Create(System.Security.Cryptography.ECCurve.NamedCurves.nistP256);
        var request = new System.Security.Cryptography.X509Certificates.CertificateRequest($"CN={node}", key, System.Security.Cryptography.HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new System.Security.Cryptography.Oid(TrustBundle.ClientAuthOid)], false));
        using var issued = request.Create(ca, now.AddMinutes(-1), now.AddDays(1), [7]);
        using var withKey = issued.CopyWithPrivateKey(key);
        return X509CertificateLoader.LoadPkcs12(withKey.Export(X509ContentType.Pkcs12), null);
    }

    /// <summary>
    /// Opens a sync stream and says Hello as <paramref name="node"/>; throws what the server answered.
    /// The server may refuse before it reads (a revoked certificate): then the write itself can
    /// fail with the call already over (Cancelled), and the server's own status is in the response.
    /// </summary>
    private static async Task HelloAsync(EdgeSync.EdgeSyncClient client, string node)
    {
        using var call = client.Sync(deadline: Deadline);
        try
        {
            await call.RequestStream.WriteAsync(new AgentMessage { Hello = new Hello { NodeName = node } });
        }
        catch (RpcException)
        {
            // The server ended the call before this write: what it said comes next, from the response.
        }

        await call.ResponseStream.MoveNext(CancellationToken.None);
    }

    [Fact]
    public async Task AnUnreadableRecordBatch_EndsTheStream_NamingIt_AfterTheGoodBatchBeforeItIsStoredAndAcked()
    {
        await using var fleet = new Fleet();
        await fleet.StartServerAsync();
        var token = await fleet.CreateJoinTokenAsync();
        await fleet.StartAgentAsync("edge-a", token);
        await fleet.WaitForNodeStateAsync("edge-a", "Ready");

        // A second stream with edge-a's own certificate (sequences far above anything its agent ships).
        using var channel = Channel(fleet, "edge-a");
        using var call = new EdgeSync.EdgeSyncClient(channel).Sync(deadline: Deadline);
        await call.RequestStream.WriteAsync(new AgentMessage { Hello = new Hello { NodeName = "edge-a" } });
        var good = new RecordList();
        foreach (var sequence in new long[] { 1_000_001, 1_000_002 })
        {
            good.Records.Add(new Outpost.Protocol.Record { Sequence = sequence, Topic = "bad-input", Source = "probe", Payload = Google.Protobuf.ByteString.CopyFromUtf8($"record {sequence}"), CreatedUnixMs = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() });
        }

        await call.RequestStream.WriteAsync(new AgentMessage { Records = new RecordBatch { FirstSequence = 1_000_001, LastSequence = 1_000_002, Count = 2, Codec = Core.Sync.BatchCodec.Identity, Data = Google.Protobuf.MessageExtensions.ToByteString(good) } });
        await call.RequestStream.WriteAsync(new AgentMessage { Records = new RecordBatch { FirstSequence = 1_000_003, LastSequence = 1_000_003, Count = 1, Codec = Core.Sync.BatchCodec.Brotli, Data = Google.Protobuf.ByteString.CopyFromUtf8("not brotli at all") } });

        var acked = new List<long>();
        var ended = await Assert.ThrowsAsync<RpcException>(async () =>
        {
            while (await call.ResponseStream.MoveNext(CancellationToken.None))
            {
                if (call.ResponseStream.Current.BatchAck is { } ack)
                {
                    acked.Add(ack.LastSequence);
                }
            }
        });
        Assert.Equal(StatusCode.InvalidArgument, ended.StatusCode);
        Assert.Contains("record batch 1000003..1000003 is unreadable", ended.Status.Detail, StringComparison.Ordinal);
        Assert.Equal([1_000_002L], acked);
        var stored = (await fleet.ReadTopicAsync("bad-input")).Select(r => (r.Node, r.Sequence, r.Text)).ToList();
        Assert.Equal([("edge-a", 1_000_001L, "record 1000001"), ("edge-a", 1_000_002L, "record 1000002")], stored);
    }

    [Fact]
    public async Task DeletedNode_IsDisconnectedWithinASecond_AndItsCertificateNoLongerWorks()
    {
        await using var fleet = new Fleet();
        await fleet.StartServerAsync();
        var token = await fleet.CreateJoinTokenAsync();
        var (agent, gateway) = await fleet.StartAgentAsync("edge-1", token);
        await Eventually.UntilAsync(async () => (await Fleet.GetAsync(gateway + "/_outpost/status")).Body, b => b.Contains("\"connected\":true", StringComparison.Ordinal),
            Fleet.Patience, "the agent to connect");
        var dir = fleet.AgentDir("edge-1");
        var certificate = await File.ReadAllTextAsync(Path.Combine(dir, "node.crt"));
        var key = await File.ReadAllTextAsync(Path.Combine(dir, "node.key"));

        var (code, output) = await fleet.ClientAsync("delete", "node", "edge-1");
        Assert.True(code == 0, output);
        // The delete itself drops the stream: nothing else would (the certificate is good for a
        // year, a live stream keeps the lease, no keepalive fails on loopback), so the wait is
        // generous and still proves it. How fast on a quiet machine: well under a second.
        await fleet.Server!.WaitForOutputAsync("Node 'edge-1' disconnected");

        var exit = await agent.WaitForExitAsync(OutpostProcess.ClientTimeout);
        Assert.NotEqual(0, exit);
        Assert.Contains("restart the agent with a join token", agent.Output, StringComparison.Ordinal);

        // The old certificate, put back in place, is refused.
        await File.WriteAllTextAsync(Path.Combine(dir, "node.crt"), certificate);
        await File.WriteAllTextAsync(Path.Combine(dir, "node.key"), key);
        using var channel = Channel(fleet, "edge-1");
        var refused = await Assert.ThrowsAsync<RpcException>(() => HelloAsync(new EdgeSync.EdgeSyncClient(channel), "edge-1"));
        Assert.Equal(StatusCode.Unauthenticated, refused.StatusCode);
        Assert.Empty(await NodeNamesAsync(fleet));
    }

    [Fact]
    public async Task RepeatedFailedJoins_AreRateLimited_EvenForAValidTokenAfterwards()
    {
        await using var fleet = new Fleet();
        await fleet.StartServerAsync();
        var valid = await fleet.CreateJoinTokenAsync();
        using var channel = Channel(fleet, null);
        var client = new EdgeSync.EdgeSyncClient(channel);
        for (var i = 0; i < 5; i++)
        {
            var guess = $"opj_{i:D12}_{new string('0', 40)}";
            var wrong = await Assert.ThrowsAsync<RpcException>(async () => await client.JoinAsync(new JoinRequest { JoinToken = guess, NodeName = "guess" }, deadline: Deadline));
            Assert.Equal(StatusCode.Unauthenticated, wrong.StatusCode);
        }

        var limited = await Assert.ThrowsAsync<RpcException>(async () => await client.JoinAsync(new JoinRequest { JoinToken = valid, NodeName = "guess" }, deadline: Deadline));

        Assert.Equal(StatusCode.ResourceExhausted, limited.StatusCode);
        Assert.Contains("too many failed joins", limited.Status.Detail, StringComparison.Ordinal);
        Assert.Empty(await NodeNamesAsync(fleet));
    }

    [Fact]
    public async Task Secrets_ReachOnlyTheirNodes_AndNeverAppearInLogsGetOutputOrDataDirs()
    {
        var value = "s3cr3t-" + Convert.ToHexString(System.Security.Cryptography.RandomNumberGenerator.GetBytes(8));
        await using var fleet = new Fleet();
        await fleet.StartServerAsync();
        var token = await fleet.CreateJoinTokenAsync();
        var (agentA, gatewayA) = await fleet.StartAgentAsync("edge-a", token, labels: "site=a");
        var (agentB, gatewayB) = await fleet.StartAgentAsync("edge-b", token, labels: "site=b");
        Directory.CreateDirectory(Path.Combine(fleet.Root, "manifests"));
        File.WriteAllBytes(Path.Combine(fleet.Root, "manifests", "secret.wasm"),
            Wasmtime.Module.ConvertText(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Modules", "secret.wat"))));
        var (code, output) = await fleet.ClientAsync("apply", "-f", fleet.WriteManifest("secret.yaml", $"""
            apiVersion: outpost.dev/v1
            kind: Secret
            metadata:
              name: db
            spec:
              data:
                password: "{value}"
              placement:
                nodeSelector:
                  site: a
            ---
            apiVersion: outpost.dev/v1
            kind: Application
            metadata:
              name: reader
            spec:
              module:
                path: secret.wasm
              triggers:
                http:
                  route: /secret
              capabilities: [secrets]
            """));
        Assert.True(code == 0, output);

        await Fleet.WaitForBodyAsync(gatewayA + "/secret", value, Fleet.Patience);
        await Fleet.WaitForBodyAsync(gatewayB + "/secret", "none", Fleet.Patience);

        // Re-applying the same secret changes nothing (sealed values are reused, not re-encrypted).
        var before = (string)(await fleet.ApiGetAsync("/apis/outpost.dev/v1/secrets/db"))["metadata"]!["resourceVersion"]!;
        (code, output) = await fleet.ClientAsync("apply", "-f", Path.Combine(fleet.Root, "manifests", "secret.yaml"));
        Assert.Contains("secret.outpost.dev/db unchanged", output, StringComparison.Ordinal);
        Assert.Equal(before, (string)(await fleet.ApiGetAsync("/apis/outpost.dev/v1/secrets/db"))["metadata"]!["resourceVersion"]!);

        foreach (var args in new[] { new[] { "get", "secrets" }, ["get", "secret", "db", "-o", "yaml"], ["get", "secret", "db", "-o", "json"], ["describe", "secret", "db"] })
        {
            (code, output) = await fleet.ClientAsync(args);
            Assert.True(code == 0, output);
            Assert.DoesNotContain(value, output, StringComparison.Ordinal);
        }

        (code, output) = await fleet.ClientAsync("get", "secret", "db", "-o", "yaml");
        Assert.Contains(SecretBox.Redacted, output, StringComparison.Ordinal);
        (code, output) = await fleet.ClientAsync("get", "secret", "db", "-o", "yaml", "--reveal");
        Assert.Contains(value, output, StringComparison.Ordinal);
        var (_, viewer) = await fleet.ClientAsync("token", "create", "--api", "--role", "viewer");
        (code, output) = await fleet.ClientAsync("--token", viewer.Trim(), "--server", fleet.ServerUrl, "get", "secret", "db", "--reveal");
        Assert.Equal(1, code);
        Assert.Contains("only an admin token may reveal", output, StringComparison.Ordinal);

        // Nowhere in plaintext: not in either data dir (databases and WAL included), not in any log.
        await agentA.StopAsync();
        await agentB.StopAsync();
        var needle = Encoding.UTF8.GetBytes(value);
        foreach (var dir in new[] { Path.Combine(fleet.Root, "server"), fleet.AgentDir("edge-a"), fleet.AgentDir("edge-b") })
        {
            foreach (var file in Directory.EnumerateFiles(dir, "*", SearchOption.AllDirectories))
            {
                Assert.True(File.ReadAllBytes(file).AsSpan().IndexOf(needle) < 0, $"{Path.GetRelativePath(fleet.Root, file)} holds the secret in plaintext");
            }
        }

        foreach (var log in new[] { fleet.Server!.Output, agentA.Output, agentB.Output })
        {
            Assert.DoesNotContain(value, log, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task NodeCertificates_RenewBeforeExpiry_WithoutDroppingTheNode()
    {
        await using var fleet = new Fleet();
        await fleet.StartServerAsync(0, "--node-cert-ttl", "24s");
        var token = await fleet.CreateJoinTokenAsync();
        var (agent, gateway) = await fleet.StartAgentAsync("edge-1", token);
        await Eventually.UntilAsync(async () => (await Fleet.GetAsync(gateway + "/_outpost/status")).Body, b => b.Contains("\"connected\":true", StringComparison.Ordinal),
            Fleet.Patience, "the agent to join");
        var first = X509CertificateLoader.LoadCertificateFromFile(Path.Combine(fleet.AgentDir("edge-1"), "node.crt"));

        var renewed = await Eventually.UntilAsync(() => X509CertificateLoader.LoadCertificateFromFile(Path.Combine(fleet.AgentDir("edge-1"), "node.crt")),
            c => c.SerialNumber != first.SerialNumber, Fleet.Patience, "a renewed certificate", c => c.SerialNumber);
        Assert.True(renewed.NotAfter > first.NotAfter);
        await agent.WaitForOutputAsync("Renewed the node certificate");
        await Eventually.UntilAsync(() => fleet.ApiGetAsync("/api/v1/events?fieldSelector=involvedObject.name=edge-1"),
            e => e["items"]!.AsArray().Any(i => (string?)i!["reason"] == "CertificateRenewed"), Fleet.Patience, "the CertificateRenewed event", e => e.ToJsonString());

        // Past the first certificate's expiry the node reconnects with the renewed one.
        var expired = first.NotAfter.ToUniversalTime().AddSeconds(1); // NotAfter is to the second
        await Eventually.UntilAsync(() => DateTime.UtcNow, now => now > expired, Fleet.Patience, $"the first certificate to expire at {expired:O}");
        await agent.StopAsync();
        var (restarted, restartedGateway) = await fleet.StartAgentAsync("edge-1", token);
        await Eventually.UntilAsync(async () => (await Fleet.GetAsync(restartedGateway + "/_outpost/status")).Body, b => b.Contains("\"connected\":true", StringComparison.Ordinal),
            Fleet.Patience, "the agent to connect with its renewed certificate", b => b + "\nagent output:\n" + restarted.Output);
        Assert.DoesNotContain("refused", restarted.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ABroughtServingCertificate_IsServed_PinnedAndTrusted()
    {
        await using var fleet = new Fleet();
        var dir = Directory.CreateDirectory(Path.Combine(fleet.Root, "byo")).FullName;
        using var rootKey = System.Security.Cryptography.ECDsa.Create(System.Security.Cryptography.ECCurve.NamedCurves.nistP256);
        var rootRequest = new CertificateRequest("CN=Example Corp Root", rootKey, System.Security.Cryptography.HashAlgorithmName.SHA256);
        rootRequest.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        rootRequest.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign, true));
        using var root = rootRequest.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddYears(1));
        using var leafKey = System.Security.Cryptography.ECDsa.Create(System.Security.Cryptography.ECCurve.NamedCurves.nistP256);
        var leafRequest = new CertificateRequest("CN=outpost.example", leafKey, System.Security.Cryptography.HashAlgorithmName.SHA256);
        var names = new SubjectAlternativeNameBuilder();
        names.AddIpAddress(IPAddress.Loopback);
        leafRequest.CertificateExtensions.Add(names.Build());
        leafRequest.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new System.Security.Cryptography.Oid(TrustBundle.ServerAuthOid)], false));
        using var leaf = leafRequest.Create(root, DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddDays(30), [7, 7, 7]);
        await File.WriteAllTextAsync(Path.Combine(dir, "server.crt"), leaf.ExportCertificatePem() + "\n" + root.ExportCertificatePem());
        await File.WriteAllTextAsync(Path.Combine(dir, "server.key"), leafKey.ExportPkcs8PrivateKeyPem());

        await fleet.StartServerAsync(0, "--tls-cert", Path.Combine(dir, "server.crt"), "--tls-key", Path.Combine(dir, "server.key"));
        var token = await fleet.CreateJoinTokenAsync();
        var (_, gateway) = await fleet.StartAgentAsync("edge-1", token);
        var (code, output) = await fleet.ClientAsync("apply", "-f", fleet.WriteManifest("hello.yaml", Fleet.HelloApp));
        Assert.True(code == 0, output);
        await Fleet.WaitForStatusAsync(gateway + "/hello", HttpStatusCode.OK, Fleet.Patience);

        // The pin covers the server's own CA (for node certificates) and the brought root, in that order.
        var config = Core.Api.ClientConfig.Parse(await File.ReadAllTextAsync(fleet.ConfigPath), fleet.ConfigPath);
        var bundle = TrustBundle.FromPem(config.CertificateAuthorityPem!);
        Assert.Equal(2, bundle.Certificates.Count);
        Assert.Equal(root.Thumbprint, bundle.Certificates[1].Thumbprint);
        Assert.Equal(bundle.Fingerprint, Core.Tokens.TokenCodec.PinOf(token));
        Assert.True(File.Exists(Path.Combine(fleet.AgentDir("edge-1"), "node.crt")));
    }
}
