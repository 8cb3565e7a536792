using System.Net.Security;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Text.Json.Nodes;
using Grpc.Core;
using Grpc.Net.Client;
using Outpost.Core.Security;
using Outpost.Protocol;

namespace Outpost.IntegrationTests;

/// <summary>
/// The mesh's least privilege with real server and agents: a node opens wires only to services an
/// app placed on it calls or whose clients.nodeSelector admits it; the caller's node, the server
/// and the endpoint's node each check; strangers' certificates and deleted nodes are refused. Each
/// refusal is shown to have reached nothing, beside an admitted node doing the same thing.
/// </summary>
[Trait("Category", "aot")]
public sealed class MeshSecurityTests
{
    [Fact]
    public async Task Wires_GoOnlyToAdmittedNodes_CheckedByTheCallerTheServerAndTheEndpoint_AndStrangersAreRefused()
    {
        await using var fleet = new Fleet();
        await fleet.StartServerAsync();
        var token = await fleet.CreateJoinTokenAsync();
        // edge-e serves the service; edge-t is admitted (trusted=yes), edge-n is not. All one site.
        var (_, gatewayE) = await fleet.StartAgentAsync("edge-e", token, "site=x,serves=yes", null, null, "--service-addresses=false");
        var (processT, _) = await fleet.StartAgentAsync("edge-t", token, "site=x,trusted=yes", null, null, "--service-addresses=false");
        var (_, gatewayN) = await fleet.StartAgentAsync("edge-n", token, "site=x");
        var name = "guarded-" + Guid.NewGuid().ToString("N")[..8];
        var app = Fleet.HelloApp + $"\n  placement:\n    nodeSelector:\n      serves: \"yes\"\n  expose:\n    service: {name}\n    port: 8080\n    clients:\n      nodeSelector:\n        trusted: \"yes\"\n";
        var (code, output) = await fleet.ClientAsync("apply", "-f", fleet.WriteManifest("guarded.yaml", app));
        Assert.True(code == 0, output);
        var service = await Eventually.UntilAsync(async () => await fleet.ApiGetAsync($"/apis/outpost.dev/v1/networkservices/{name}"),
            s => (int?)s["status"]?["healthyEndpoints"] == 1 && s["status"]?["clients"]?.AsArray().Count == 1, Fleet.Patience, "the service, its endpoint and its client", s => s.ToJsonString());
        Assert.Equal("edge-t", (string?)service["status"]!["clients"]![0]);
        var peerAddress = (string)service["status"]!["endpoints"]![0]!["address"]!;
        var address = (string)service["spec"]!["address"]!;

        // The admitted node dials the endpoint directly and is answered: the control for what follows.
        await Eventually.UntilAsync(() => DialDirectAsync(peerAddress, NodeCertificate(fleet, "edge-t"), name), answer => answer == "ok", Fleet.Patience,
            "edge-e to admit edge-t", a => a);

        // 1. The caller's node: a program on edge-n at the service's address gets its connection closed, unanswered.
        Assert.StartsWith("failed:", await AskAsync($"http://{address}:8080/reading"), StringComparison.Ordinal);
        Assert.True(await MetricAsync(gatewayN, "outpost_node_mesh_connections_total", "route=\"not_allowed\"") >= 1);

        // 2. The server: edge-n's own credentials, asking the server to relay, bypassing its agent's check.
        using (var channel = ServerChannel(fleet, NodeCertificate(fleet, "edge-n")))
        {
            var error = await RelayDialAsync(channel, name);
            Assert.Contains("node edge-n may not open wires to service", error, StringComparison.Ordinal);
        }

        Assert.Contains($"outpost_mesh_dials_total{{service=\"{name}\",result=\"not_allowed\"}} 1", await fleet.ServerMetricsAsync(), StringComparison.Ordinal);
        Assert.Equal(1, (long)(await fleet.ApiGetAsync($"/apis/outpost.dev/v1/networkservices/{name}"))["status"]!["relayed"]!["notAllowed"]!);

        // 3. The endpoint's node: edge-n dials edge-e directly, with its own valid node certificate.
        Assert.Equal($"no node edge-n may not open wires to service '{name}': no app placed on it calls it (capability http-out: [{name}.mesh]), and the service's clients.nodeSelector does not admit it",
            await DialDirectAsync(peerAddress, NodeCertificate(fleet, "edge-n"), name));

        // 4. A certificate of another CA, named like an admitted node: no handshake.
        using (var stranger = StrangerCertificate("edge-t"))
        {
            Assert.StartsWith("refused:", await DialDirectAsync(peerAddress, stranger, name), StringComparison.Ordinal);
        }

        Assert.StartsWith("refused:", await DialDirectAsync(peerAddress, null, name), StringComparison.Ordinal);

        // Nothing of it reached edge-e: one direct wire accepted (the admitted node's), no relayed wire opened, and its app served nothing.
        var metricsE = (await Fleet.GetAsync(gatewayE + "/_outpost/metrics")).Body;
        Assert.Equal(1, Metric(metricsE, "outpost_node_mesh_direct_total", "event=\"accepted\""));
        Assert.True(Metric(metricsE, "outpost_node_mesh_direct_total", "event=\"refused\"") >= 3, metricsE);
        Assert.Equal(0, Metric(metricsE, "outpost_node_wires_total", "result=\"opened\""));
        Assert.Equal(0, Metric(metricsE, "outpost_app_requests_total", "class=\"success\""));

        // 5. A deleted node: the server refuses its credentials, and edge-e stops admitting it once it hears.
        var admitted = NodeCertificate(fleet, "edge-t");
        await processT.StopAsync();
        (code, output) = await fleet.ClientAsync("delete", "node", "edge-t");
        Assert.True(code == 0, output);
        using (var channel = ServerChannel(fleet, admitted))
        {
            var ex = await Assert.ThrowsAsync<RpcException>(() => RelayDialAsync(channel, name));
            Assert.True(ex.StatusCode is StatusCode.Unauthenticated or StatusCode.PermissionDenied, ex.ToString());
        }

        await Eventually.UntilAsync(() => DialDirectAsync(peerAddress, admitted, name), answer => answer.StartsWith("no node edge-t may not open wires", StringComparison.Ordinal),
            Fleet.Patience, "edge-e to stop admitting the deleted edge-t", a => a);
    }

    /// <summary>A node's certificate and key, as its agent keeps them.</summary>
    private static X509Certificate2 NodeCertificate(Fleet fleet, string node)
    {
        var dir = fleet.AgentDir(node);
        using var pem = X509Certificate2.CreateFromPemFile(Path.Combine(dir, "node.crt"), Path.Combine(dir, "node.key"));
        return X509CertificateLoader.LoadPkcs12(pem.Export(X509ContentType.Pkcs12), null);
    }

    /// <summary>A certificate for <paramref name="node"/> from a CA of nobody's fleet.</summary>
    private static X509Certificate2 StrangerCertificate(string node)
    {
        using var caKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var caRequest = new CertificateRequest("CN=Outpost CA", caKey, HashAlgorithmName.SHA256);
        caRequest.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        // One clock reading for both: the node's certificate may not outlive its issuer, and a second
        // UtcNow read a moment later would ask for a notAfter past the CA's.
        var now = DateTimeOffset.UtcNow;
        using var ca = caRequest.CreateSelfSigned(now.AddMinutes(-5), now.AddDays(1));
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest($"CN={node}, O=Outpost nodes", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid(TrustBundle.ClientAuthOid), new Oid(TrustBundle.ServerAuthOid)], false));
        using var issued = request.Create(ca, now.AddMinutes(-5), now.AddDays(1), [9, 9]);
        using var withKey = issued.CopyWithPrivateKey(key);
        return X509CertificateLoader.LoadPkcs12(withKey.Export(X509ContentType.Pkcs12), null);
    }

    /// <summary>
    /// Opens TLS to a node's direct-wire listener with <paramref name="certificate"/> (or none) and
    /// dials <paramref name="service"/>: the node's one-line answer ("ok", or "no REASON"), or
    /// "refused: ..." when the connection ended first.
    /// </summary>
    private static async Task<string> DialDirectAsync(string address, X509Certificate2? certificate, string service)
    {
        var colon = address.LastIndexOf(':');
        using var tcp = new TcpClient();
        using var timeout = new CancellationTokenSource(Fleet.RequestTimeout);
        try
        {
            await tcp.ConnectAsync(address[..colon], int.Parse(address[(colon + 1)..], System.Globalization.CultureInfo.InvariantCulture), timeout.Token);
            await using var tls = new SslStream(tcp.GetStream());
            await tls.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
            {
                TargetHost = "peer",
                ClientCertificates = certificate is null ? null : [certificate],
#pragma warning disable CA5359 // the node's identity is not what this checks: what it lets in is
                RemoteCertificateValidationCallback = (_, _, _, _) => true,
#pragma warning restore CA5359
            }, timeout.Token);
            await tls.WriteAsync(Encoding.ASCII.GetBytes($"dial {service}\n"), timeout.Token);
            var line = new List<byte>();
            var one = new byte[1];
            while (await tls.ReadAsync(one, timeout.Token) == 1 && one[0] != '\n')
            {
                line.Add(one[0]);
            }

            return line.Count == 0 ? "refused: closed without an answer" : Encoding.UTF8.GetString([.. line]);
        }
        catch (Exception ex) when (ex is IOException or System.Security.Authentication.AuthenticationException or SocketException)
        {
            return "refused: " + ex.Message;
        }
    }

    /// <summary>A gRPC channel to the server trusting its CA, presenting <paramref name="certificate"/>.</summary>
    private static GrpcChannel ServerChannel(Fleet fleet, X509Certificate2 certificate)
    {
        var config = Core.Api.ClientConfig.Parse(File.ReadAllText(fleet.ConfigPath), fleet.ConfigPath);
        var ssl = new SslClientAuthenticationOptions
        {
            RemoteCertificateValidationCallback = TrustBundle.FromPem(config.CertificateAuthorityPem!).ServerValidator(),
            ClientCertificates = [certificate],
        };
        return GrpcChannel.ForAddress(fleet.ServerUrl, new GrpcChannelOptions { HttpHandler = new SocketsHttpHandler { SslOptions = ssl }, DisposeHttpClient = true });
    }

    /// <summary>Asks the server to relay a wire to <paramref name="service"/>, as an agent does; the error the wire ends with.</summary>
    private static async Task<string> RelayDialAsync(GrpcChannel channel, string service)
    {
        var client = new EdgeSync.EdgeSyncClient(channel);
        using var call = client.Wire(new Metadata { { "outpost-dial", service } }, deadline: DateTime.UtcNow + Fleet.Patience);
        try
        {
            await call.RequestStream.WriteAsync(new WireFrame { Data = Google.Protobuf.ByteString.CopyFromUtf8("GET /reading HTTP/1.1\r\nHost: x\r\n\r\n") });
        }
        catch (RpcException)
        {
            // The server ended the call before this write: what it said comes next, from the response.
        }

        var received = new StringBuilder();
        while (await call.ResponseStream.MoveNext(CancellationToken.None))
        {
            if (call.ResponseStream.Current.Error.Length > 0)
            {
                return call.ResponseStream.Current.Error;
            }

            received.Append(call.ResponseStream.Current.Data.ToStringUtf8());
        }

        return "no error; received: " + received;
    }

    private static async Task<string> AskAsync(string url)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, url);
        request.Headers.ConnectionClose = true;
        try
        {
            using var response = await Fleet.Http.SendAsync(request);
            return $"{(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}";
        }
        catch (HttpRequestException ex)
        {
            return "failed: " + ex.Message;
        }
    }

    private static async Task<double> MetricAsync(string gateway, string name, string label) =>
        Metric((await Fleet.GetAsync(gateway + "/_outpost/metrics")).Body, name, label);

    /// <summary>The value of the sample of <paramref name="name"/> with <paramref name="label"/>; 0 when there is none.</summary>
    private static double Metric(string metrics, string name, string label)
    {
        var line = metrics.Split('\n').FirstOrDefault(l => l.StartsWith(name + "{", StringComparison.Ordinal) && l.Contains(label, StringComparison.Ordinal));
        return line is null ? 0 : double.Parse(line[(line.LastIndexOf(' ') + 1)..], System.Globalization.CultureInfo.InvariantCulture);
    }
}
