using System.Net;
using System.Text;
using System.Text.Json.Nodes;

namespace Outpost.IntegrationTests;

/// <summary>
/// The mesh's first pieces with a real server and agents: services from spec.expose, their
/// endpoints and health, and the cloud gateway (/proxy) reaching nodes and services through the
/// nodes' own outbound connections.
/// </summary>
[Trait("Category", "aot")]
public sealed class MeshTests
{
    private const string EchoService = """
        apiVersion: outpost.dev/v1
        kind: Application
        metadata:
          name: echo
        spec:
          module:
            path: echo.wasm
          triggers:
            http:
              route: /echo
          expose:
            service: echoes
            port: 8080
        """;

    private static string WriteEcho(Fleet fleet, string yaml = EchoService)
    {
        var manifest = fleet.WriteManifest("echo.yaml", yaml);
        var module = Path.Combine(Path.GetDirectoryName(manifest)!, "echo.wasm");
        if (!File.Exists(module))
        {
            File.Copy(Path.Combine(AppContext.BaseDirectory, "samples", "apps", "echo", "echo.wasm"), module);
        }

        return manifest;
    }

    private static async Task<(HttpStatusCode Status, string Body, string? Endpoint)> ProxyAsync(Fleet fleet, HttpMethod method, string path, string? body = null, string? token = null)
    {
        using var request = new HttpRequestMessage(method, fleet.ServerUrl + path);
        if (body is not null)
        {
            request.Content = new StringContent(body, Encoding.UTF8, "text/plain");
        }

        request.Headers.TryAddWithoutValidation("X-Echo", "through the wire");
        if (token is not null)
        {
            request.Headers.Authorization = new("Bearer", token);
        }

        using var response = await fleet.ApiSendAsync(request, authenticate: token is null);
        var text = await response.Content.ReadAsStringAsync();
        if (response.Content.Headers.ContentType?.MediaType == "application/json" && JsonNode.Parse(text) is JsonObject { } status && (string?)status["kind"] == "Status")
        {
            text = (string?)status["message"] ?? text; // the API's error, in words
        }

        return (response.StatusCode, text, response.Headers.TryGetValues("Outpost-Endpoint", out var values) ? values.Single() : null);
    }

    /// <summary>A server, one agent (edge-1) and the echo app as the one endpoint of service echoes.</summary>
    private static async Task StartWithEchoAsync(Fleet fleet)
    {
        await fleet.StartServerAsync();
        await fleet.StartAgentAsync("edge-1", await fleet.CreateJoinTokenAsync());
        var (code, output) = await fleet.ClientAsync("apply", "-f", WriteEcho(fleet));
        Assert.True(code == 0, output);
        await WaitForHealthyAsync(fleet, "echoes", 1);
    }

    private static async Task<JsonObject> WaitForHealthyAsync(Fleet fleet, string service, int healthy) =>
        await Eventually.UntilAsync(async () => await fleet.ApiGetAsync($"/apis/outpost.dev/v1/networkservices/{service}"),
            s => (int?)s["status"]?["healthyEndpoints"] == healthy, Fleet.Patience, $"service {service} to have {healthy} healthy endpoints", s => s.ToJsonString());

    [Fact]
    public async Task TheCloudGateway_ReachesNodesAndServices_ThroughTheNodesOwnConnections()
    {
        await using var fleet = new Fleet();
        await fleet.StartServerAsync();
        var token = await fleet.CreateJoinTokenAsync();
        await fleet.StartAgentAsync("edge-1", token, "site=x");
        var (edge2, _) = await fleet.StartAgentAsync("edge-2", token, "site=y");
        var (code, output) = await fleet.ClientAsync("apply", "-f", WriteEcho(fleet), "-f", fleet.WriteManifest("hello.yaml", Fleet.HelloApp));
        Assert.True(code == 0, output);

        var service = await WaitForHealthyAsync(fleet, "echoes", 2);
        Assert.Equal(8080, (int)service["spec"]!["port"]!);
        var endpoints = service["status"]!["endpoints"]!.AsArray().Select(e => e!.AsObject()).ToList();
        Assert.Equal(["edge-1", "edge-2"], endpoints.Select(e => (string)e["node"]!));
        Assert.Equal(["x", "y"], endpoints.Select(e => (string)e["site"]!));
        Assert.All(endpoints, e => Assert.Equal("echo", (string)e["app"]!));

        // A node's gateway, any method, the body and headers carried both ways.
        var (status, body, _) = await ProxyAsync(fleet, HttpMethod.Get, "/proxy/nodes/edge-2/hello");
        Assert.True(status == HttpStatusCode.OK, body);
        Assert.Equal("hello from edge-2 (path /)\n", body);
        (status, body, _) = await ProxyAsync(fleet, HttpMethod.Post, "/proxy/nodes/edge-1/echo/sub?q=1", "sent through the server");
        Assert.True(status == HttpStatusCode.OK, body);
        Assert.True(body.Contains("method: POST\npath: /sub\nquery: q=1\n", StringComparison.Ordinal), body);
        Assert.True(body.Contains("x-echo: through the wire\n", StringComparison.Ordinal), body);
        Assert.True(body.Contains("body (23 bytes): sent through the server", StringComparison.Ordinal), body);

        // A service: one of its endpoints answers, for every path, whatever the app's route.
        var seen = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < 40 && seen.Count < 2; i++)
        {
            (status, body, var endpoint) = await ProxyAsync(fleet, HttpMethod.Get, "/proxy/services/echoes/any/path");
            Assert.True(status == HttpStatusCode.OK, body);
            Assert.True(body.Contains("path: /any/path\n", StringComparison.Ordinal), body);
            seen.Add(endpoint!);
        }

        Assert.Equal(["edge-1/echo", "edge-2/echo"], seen.Order(StringComparer.Ordinal));
        var metrics = await fleet.ServerMetricsAsync();
        Assert.Matches(@"outpost_mesh_service_requests_total\{service=""echoes"",via=""proxy"",result=""reached""\} [1-9]", metrics);
        Assert.Matches(@"outpost_mesh_wires_total\{result=""opened""\} [1-9]", metrics);

        // The CLI and kubectl list it.
        (code, output) = await fleet.ClientAsync("get", "services");
        Assert.True(code == 0, output);
        Assert.Matches(@"echoes\s+127\.77\.\d+\.\d+\s+8080\s+echo\s+2/2", output);
        (code, output) = await fleet.ClientAsync("describe", "service", "echoes");
        Assert.True(code == 0, output);
        Assert.Contains("healthy: true", output, StringComparison.Ordinal);
        using (var kubectl = new Kubectl(fleet))
        {
            (code, output) = await kubectl.RunAsync("get", "networkservices");
            Assert.True(code == 0, output);
            Assert.Matches(@"echoes\s+127\.77\.\d+\.\d+\s+8080\s+echo\s+2/2", output);
        }

        // A node gone from the server is no endpoint: every request goes to the other, none fails.
        await edge2.StopAsync();
        await WaitForHealthyAsync(fleet, "echoes", 1);
        for (var i = 0; i < 10; i++)
        {
            (status, body, var endpoint) = await ProxyAsync(fleet, HttpMethod.Get, "/proxy/services/echoes/");
            Assert.True(status == HttpStatusCode.OK, body);
            Assert.Equal("edge-1/echo", endpoint);
        }

        (status, body, _) = await ProxyAsync(fleet, HttpMethod.Get, "/proxy/nodes/edge-2/hello");
        Assert.Equal(HttpStatusCode.ServiceUnavailable, status);
        Assert.True(body.Contains("node 'edge-2' is not connected to this server", StringComparison.Ordinal), body);

        // Through the proxy every request is audited, GETs too, naming where it went.
        var audit = (await fleet.GetJsonAsync("get", "audit"))["items"]!.AsArray().Select(i => i!.AsObject()).ToList();
        Assert.Contains(audit, e => (string?)e["verb"] == "GET" && ((string?)e["path"] ?? "").StartsWith("/proxy/services/echoes/", StringComparison.Ordinal)
            && ((string?)e["detail"] ?? "").Contains("app echo on node edge-1", StringComparison.Ordinal));
    }

    [Fact]
    public async Task TheCloudGateway_RefusesViewersAndStrangers_AndSaysWhatIsMissing()
    {
        await using var fleet = new Fleet();
        await StartWithEchoAsync(fleet);
        int code;
        string output;
        (code, var viewer) = await fleet.ClientAsync("token", "create", "--api", "--role", "viewer", "--description", "dashboard");
        Assert.True(code == 0, viewer);

        var (status, body, endpoint) = await ProxyAsync(fleet, HttpMethod.Get, "/proxy/services/echoes/", token: viewer.Trim());
        Assert.Equal(HttpStatusCode.Forbidden, status);
        Assert.True(body.Contains("the viewer role may not reach nodes", StringComparison.Ordinal), body);
        Assert.Null(endpoint);
        using (var anonymous = new HttpRequestMessage(HttpMethod.Get, fleet.ServerUrl + "/proxy/nodes/edge-1/echo"))
        {
            using var response = await fleet.ApiSendAsync(anonymous, authenticate: false);
            Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        }

        var audit = (await fleet.GetJsonAsync("get", "audit"))["items"]!.AsArray().Select(i => i!.AsObject()).ToList();
        Assert.Contains(audit, e => (string?)e["role"] == "viewer" && (int)e["status"]! == 403 && ((string?)e["path"] ?? "").StartsWith("/proxy/", StringComparison.Ordinal));

        // Nothing by those names: said, and nothing reached.
        (status, body, _) = await ProxyAsync(fleet, HttpMethod.Get, "/proxy/services/nobody/");
        Assert.Equal(HttpStatusCode.NotFound, status);
        Assert.True(body.Contains("service 'nobody' not found: no app exposes it", StringComparison.Ordinal), body);
        (status, body, _) = await ProxyAsync(fleet, HttpMethod.Get, "/proxy/nodes/edge-9/echo");
        Assert.Equal(HttpStatusCode.NotFound, status);
        Assert.Contains("nodes \"edge-9\" not found", body, StringComparison.Ordinal);

        // The only endpoint's app stops exposing the service: it leaves, and the service with it.
        (code, output) = await fleet.ClientAsync("apply", "-f", WriteEcho(fleet, EchoService.Replace("service: echoes", "service: echoes-v2", StringComparison.Ordinal)));
        Assert.True(code == 0, output);
        (status, body, _) = await ProxyAsync(fleet, HttpMethod.Get, "/proxy/services/echoes/");
        Assert.Equal(HttpStatusCode.NotFound, status);

        // A deleted node is no longer reached, even while its agent runs on.
        (code, output) = await fleet.ClientAsync("delete", "node", "edge-1");
        Assert.True(code == 0, output);
        (status, body, _) = await ProxyAsync(fleet, HttpMethod.Get, "/proxy/nodes/edge-1/echo");
        Assert.Equal(HttpStatusCode.NotFound, status);
        (status, body, _) = await ProxyAsync(fleet, HttpMethod.Get, "/proxy/services/echoes-v2/");
        Assert.True(status is HttpStatusCode.NotFound or HttpStatusCode.ServiceUnavailable, $"{(int)status} {body}");
        Assert.DoesNotContain("method: GET", body, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ExposeAndHttpOut_AreCheckedAtApply_NamingTheField()
    {
        await using var fleet = new Fleet();
        await fleet.StartServerAsync();
        (string Yaml, string Field, string Words)[] cases =
        [
            (EchoService.Replace("service: echoes", "service: Echo_Service", StringComparison.Ordinal), "spec.expose.service", "is not a service name"),
            (EchoService.Replace("port: 8080", "port: 70000", StringComparison.Ordinal), "spec.expose.port", "expected a port number from 1 to 65535"),
            (EchoService.Replace("port: 8080", "port: 8080\n    ingres: /shop", StringComparison.Ordinal), "spec.expose", "ingres"),
            (EchoService.Replace("    service: echoes\n", "", StringComparison.Ordinal), "spec.expose.service", "required field is missing"),
            (EchoService.Replace("  expose:", "  capabilities:\n    - http-out: [temps.mesh, \"https://api.example.com/v1\"]\n  expose:", StringComparison.Ordinal),
                "spec.capabilities[0].http-out[1]", "is not a host name"),
            (EchoService.Replace("  expose:", "  capabilities: [http-out]\n  expose:", StringComparison.Ordinal), "spec.capabilities[0]", "http-out needs its allow-list"),
            (EchoService.Replace("port: 8080", "port: 8080\n    clients: {nodeSelector: site-a}", StringComparison.Ordinal), "spec.expose.clients.nodeSelector", "expected"),
        ];
        foreach (var (yaml, field, words) in cases)
        {
            var (code, output) = await fleet.ClientAsync("apply", "-f", WriteEcho(fleet, yaml));
            Assert.True(code != 0, output);
            Assert.Contains(field, output, StringComparison.Ordinal);
            Assert.Contains(words, output, StringComparison.Ordinal);
        }

        var (applied, said) = await fleet.ClientAsync("apply", "-f", WriteEcho(fleet));
        Assert.True(applied == 0, said);
        // A second app may serve the same service only on the same port.
        var other = EchoService.Replace("name: echo", "name: echo-two", StringComparison.Ordinal).Replace("route: /echo", "route: /echo-two", StringComparison.Ordinal);
        var (code2, output2) = await fleet.ClientAsync("apply", "-f", WriteEcho(fleet, other.Replace("port: 8080", "port: 9090", StringComparison.Ordinal)));
        Assert.True(code2 != 0, output2);
        Assert.Contains("spec.expose.port", output2, StringComparison.Ordinal);
        Assert.Contains("already exposed on port 8080 by app 'echo'", output2, StringComparison.Ordinal);
        (code2, output2) = await fleet.ClientAsync("apply", "-f", WriteEcho(fleet, other));
        Assert.True(code2 == 0, output2);
        (code2, output2) = await fleet.ClientAsync("get", "services");
        Assert.Matches(@"echoes\s+127\.77\.\d+\.\d+\s+8080\s+echo,echo-two\s+0/0", output2);
    }

    [Fact]
    public async Task ANetworkService_IsAppliedAsAResource_SelectingItsAppsByLabel_AndDeletedAgain()
    {
        await using var fleet = new Fleet();
        await fleet.StartServerAsync();
        var (_, gateway) = await fleet.StartAgentAsync("edge-1", await fleet.CreateJoinTokenAsync(), "site=x");
        var name = "declared-" + Guid.NewGuid().ToString("N")[..8];
        var app = Fleet.HelloApp.Replace("  name: hello\n", "  name: hello\n  labels:\n    serves: readings\n", StringComparison.Ordinal);
        var service = $"""
            apiVersion: outpost.dev/v1
            kind: NetworkService
            metadata:
              name: {name}
            spec:
              selector:
                serves: readings
              port: 8080
              clients:
                nodeSelector:
                  site: x
            """;
        var (code, output) = await fleet.ClientAsync("apply", "-f", fleet.WriteManifest("hello.yaml", app), "-f", fleet.WriteManifest("service.yaml", service));
        Assert.True(code == 0, output);
        Assert.Contains($"networkservice.outpost.dev/{name} created", output, StringComparison.Ordinal);

        // The app has no spec.expose: the NetworkService makes its instance an endpoint.
        var json = await WaitForHealthyAsync(fleet, name, 1);
        Assert.Equal("serves", json["spec"]!["selector"]!.AsObject().Single().Key);
        Assert.NotNull(json["metadata"]!["resourceVersion"]);
        Assert.Equal("hello", (string?)json["status"]!["endpoints"]![0]!["app"]);
        var address = (string)json["spec"]!["address"]!;
        await Fleet.WaitForBodyAsync($"http://{address}:8080/reading", "hello from edge-1 (path /reading)\n");
        (code, output) = await fleet.ClientAsync("get", "services");
        Assert.Matches($@"{name}\s+{System.Text.RegularExpressions.Regex.Escape(address)}\s+8080\s+hello\s+1/1", output);

        // Bad input: no selector; an app exposing it on another port.
        (code, output) = await fleet.ClientAsync("apply", "-f", fleet.WriteManifest("bad.yaml", service.Replace("  selector:\n    serves: readings\n", "", StringComparison.Ordinal)));
        Assert.True(code != 0, output);
        Assert.Contains("spec.selector", output, StringComparison.Ordinal);
        (code, output) = await fleet.ClientAsync("apply", "-f", fleet.WriteManifest("other.yaml",
            Fleet.HelloApp.Replace("name: hello", "name: other", StringComparison.Ordinal).Replace("route: /hello", "route: /other", StringComparison.Ordinal)
            + $"\n  expose:\n    service: {name}\n    port: 9090\n"));
        Assert.True(code != 0, output);
        Assert.Contains("is declared by its NetworkService on port 8080", output, StringComparison.Ordinal);

        // Deleted: the service is gone (the app no longer serves one).
        (code, output) = await fleet.ClientAsync("delete", "-f", fleet.WriteManifest("service.yaml", service));
        Assert.True(code == 0, output);
        await Eventually.UntilAsync(async () => (await fleet.ClientAsync("get", "services", name)).Output, o => o.Contains("not found", StringComparison.Ordinal),
            Fleet.Patience, "the service to be gone", o => o);
        Assert.Equal(HttpStatusCode.OK, (await Fleet.GetAsync(gateway + "/hello")).Status);
    }

    [Fact]
    public async Task PortForward_CarriesPlainTcpBothWays_ToANodesPort_AndToAService()
    {
        await using var fleet = new Fleet();
        await StartWithEchoAsync(fleet);
        int code;
        string output;

        // A plain TCP service on the node's loopback: answers each piece upper-cased, and says
        // when it has read the client's end of stream, then closes.
        using var listener = new System.Net.Sockets.TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var remote = ((IPEndPoint)listener.LocalEndpoint).Port;
        var serving = Task.Run(async () =>
        {
            using var accepted = await listener.AcceptTcpClientAsync();
            var stream = accepted.GetStream();
            var buffer = new byte[4096];
            int read;
            while ((read = await stream.ReadAsync(buffer)) > 0)
            {
                await stream.WriteAsync(Encoding.ASCII.GetBytes(Encoding.ASCII.GetString(buffer, 0, read).ToUpperInvariant()));
            }

            await stream.WriteAsync("<end of stream seen>"u8.ToArray());
        });

        string[] config = ["--config", fleet.ConfigPath];
        await using var toNode = OutpostProcess.Start(fleet.Home, ["port-forward", "node/edge-1", $"0:{remote}", .. config]);
        var local = await toNode.WaitForLineAsync("Forwarding from ", Fleet.StartTimeout);
        Assert.EndsWith($"-> node/edge-1:{remote}", local, StringComparison.Ordinal);
        var port = int.Parse(local.Split(' ')[0].Split(':')[1], System.Globalization.CultureInfo.InvariantCulture);
        using (var client = new System.Net.Sockets.TcpClient())
        {
            await client.ConnectAsync(IPAddress.Loopback, port);
            var stream = client.GetStream();
            await stream.WriteAsync("first piece"u8.ToArray());
            var answer = new byte[64];
            var got = await stream.ReadAtLeastAsync(answer, "FIRST PIECE".Length);
            Assert.Equal("FIRST PIECE", Encoding.ASCII.GetString(answer, 0, got)); // an answer before the client is done: both ways at once
            await stream.WriteAsync(" and the last"u8.ToArray());
            client.Client.Shutdown(System.Net.Sockets.SocketShutdown.Send);
            using var rest = new MemoryStream();
            await stream.CopyToAsync(rest);
            Assert.Equal(" AND THE LAST<end of stream seen>", Encoding.ASCII.GetString(rest.ToArray()));
        }

        await serving;

        // A service: the forwarded port speaks HTTP to one of its endpoints, any path.
        await using var toService = OutpostProcess.Start(fleet.Home, ["port-forward", "svc/echoes", "0", .. config]);
        local = await toService.WaitForLineAsync("Forwarding from ", Fleet.StartTimeout);
        Assert.EndsWith("-> svc/echoes:8080", local, StringComparison.Ordinal);
        var (status, body) = await Fleet.GetAsync($"http://{local.Split(' ')[0]}/through/port-forward");
        Assert.True(status == HttpStatusCode.OK, body);
        Assert.Contains("path: /through/port-forward\n", body, StringComparison.Ordinal);

        // Bad targets say what to write instead, and nothing listens.
        (code, output) = await fleet.ClientAsync("port-forward", "node/edge-1", "8080");
        Assert.True(code != 0 && output.Contains("a node needs LOCAL:REMOTE", StringComparison.Ordinal), output);
        (code, output) = await fleet.ClientAsync("port-forward", "svc/echoes", "0:99");
        Assert.True(code != 0 && output.Contains("service 'echoes' is exposed on port 8080, not 99", StringComparison.Ordinal), output);
        (code, output) = await fleet.ClientAsync("port-forward", "pod/edge-1", "1:2");
        Assert.True(code != 0 && output.Contains("write node/NAME or svc/NAME", StringComparison.Ordinal), output);
    }

    [Fact]
    public async Task Ingress_ServesPublishedServices_WithoutAToken_AndNothingElse()
    {
        await using var fleet = new Fleet();
        await fleet.StartServerAsync(0, "--ingress", "127.0.0.1:0");
        var ingress = await fleet.Server!.WaitForLineAsync("ingress:", Fleet.StartTimeout);
        var token = await fleet.CreateJoinTokenAsync();
        var (agent, _) = await fleet.StartAgentAsync("edge-1", token);
        var published = EchoService.Replace("port: 8080", "port: 8080\n    ingress:\n      path: /shop", StringComparison.Ordinal);
        var (code, output) = await fleet.ClientAsync("apply", "-f", WriteEcho(fleet, published));
        Assert.True(code == 0, output);
        await WaitForHealthyAsync(fleet, "echoes", 1);

        // No token; the prefix is taken off, and named in X-Forwarded-Prefix; the caller's own
        // Authorization header reaches the app (it is theirs, not an API token).
        using (var request = new HttpRequestMessage(HttpMethod.Post, ingress + "/shop/cart?items=2") { Content = new StringContent("two apples") })
        {
            request.Headers.TryAddWithoutValidation("X-Echo", "from the internet");
            using var response = await Fleet.Http.SendAsync(request);
            var body = await response.Content.ReadAsStringAsync();
            Assert.True(response.StatusCode == HttpStatusCode.OK, body);
            Assert.True(body.Contains("method: POST\npath: /cart\nquery: items=2\n", StringComparison.Ordinal), body);
            Assert.True(body.Contains("x-echo: from the internet\n", StringComparison.Ordinal), body);
            Assert.True(body.Contains("body (10 bytes): two apples", StringComparison.Ordinal), body);
        }

        // Only published paths: not other paths, not the API, not /proxy.
        foreach (var path in new[] { "/shopping", "/api/v1/nodes", "/proxy/nodes/edge-1/echo", "/" })
        {
            var (status, body) = await Fleet.GetAsync(ingress + path);
            Assert.True(status == HttpStatusCode.NotFound, $"{path}: {(int)status} {body}");
            Assert.Contains("no service is published at", body, StringComparison.Ordinal);
        }

        // A path is one service's, and a service has one path.
        var other = EchoService.Replace("name: echo", "name: other", StringComparison.Ordinal).Replace("route: /echo", "route: /other", StringComparison.Ordinal)
            .Replace("service: echoes", "service: others", StringComparison.Ordinal).Replace("port: 8080", "port: 8080\n    ingress:\n      path: /shop", StringComparison.Ordinal);
        (code, output) = await fleet.ClientAsync("apply", "-f", WriteEcho(fleet, other));
        Assert.True(code != 0 && output.Contains("spec.expose.ingress.path", StringComparison.Ordinal) && output.Contains("ingress path /shop already serves service 'echoes'", StringComparison.Ordinal), output);
        (code, output) = await fleet.ClientAsync("apply", "-f", WriteEcho(fleet, published.Replace("path: /shop", "path: /shop/../admin", StringComparison.Ordinal)));
        Assert.True(code != 0 && output.Contains("is not an ingress path", StringComparison.Ordinal), output);

        // The node leaves: 503, said in plain words.
        await agent.StopAsync();
        var (_, said) = await Eventually.UntilAsync(() => Fleet.GetAsync(ingress + "/shop/"), r => r.Status == HttpStatusCode.ServiceUnavailable, Fleet.Patience,
            "ingress to answer 503 once the only endpoint is gone", r => $"{(int)r.Status} {r.Body}");
        Assert.Contains("service echoes has no reachable endpoint", said, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ServiceAddresses_AnsweredByDns_ReachAnEndpointOnAnotherNode_AndStayWhenTheEndpointMoves()
    {
        await using var fleet = new Fleet();
        await fleet.StartServerAsync();
        var token = await fleet.CreateJoinTokenAsync();
        int dnsPort;
        using (var probe = new System.Net.Sockets.UdpClient(new IPEndPoint(IPAddress.Loopback, 0)))
        {
            dnsPort = ((IPEndPoint)probe.Client.LocalEndPoint!).Port;
        }

        // edge-1 runs no endpoint: its programs reach the service through its address. The others
        // serve it and leave the addresses to edge-1 (on one host they would share them).
        await fleet.StartAgentAsync("edge-1", token, "site=x", null, null, "--dns", $"127.0.0.1:{dnsPort}");
        await fleet.StartAgentAsync("edge-2", token, "site=y,role=first", null, null, "--service-addresses=false");
        await fleet.StartAgentAsync("edge-3", token, "site=x,role=second", null, null, "--service-addresses=false");
        // A name of its own: the address comes from it, and nothing else on this host may hold that one.
        var name = "temps-" + Guid.NewGuid().ToString("N")[..8];
        // Programs on edge-1 (not Outpost apps) may call it: its site is admitted.
        var hello = Fleet.HelloApp + $"\n  placement:\n    nodeSelector:\n      role: first\n  expose:\n    service: {name}\n    port: 8080\n    clients:\n      nodeSelector:\n        site: x\n";
        var (code, output) = await fleet.ClientAsync("apply", "-f", fleet.WriteManifest("hello.yaml", hello));
        Assert.True(code == 0, output);
        var service = await WaitForHealthyAsync(fleet, name, 1);
        var address = (string)service["spec"]!["address"]!;
        Assert.StartsWith("127.77.", address, StringComparison.Ordinal);

        // dig, as a program on the node would ask, once the registry has reached edge-1.
        await Eventually.UntilAsync(async () => (await DigAsync(dnsPort, $"{name}.mesh", "+short")).Trim(), a => a == address, Fleet.Patience,
            $"edge-1 to answer {name}.mesh with {address}", a => a);
        Assert.Contains("status: NXDOMAIN", await DigAsync(dnsPort, "nobody.mesh"), StringComparison.Ordinal);
        Assert.Contains("status: REFUSED", await DigAsync(dnsPort, "example.com"), StringComparison.Ordinal);

        // A plain HTTP client on edge-1's host, at the service's address: edge-2 answers, every path.
        await Fleet.WaitForBodyAsync($"http://{address}:8080/reading", "hello from edge-2 (path /reading)\n");

        // The endpoint moves to edge-3: the address stays, and now edge-3 answers there.
        (code, output) = await fleet.ClientAsync("apply", "-f", fleet.WriteManifest("hello.yaml", hello.Replace("role: first", "role: second", StringComparison.Ordinal)));
        Assert.True(code == 0, output);
        await Fleet.WaitForBodyAsync($"http://{address}:8080/reading", "hello from edge-3 (path /reading)\n");
        Assert.Equal(address, (string)(await fleet.ApiGetAsync($"/apis/outpost.dev/v1/networkservices/{name}"))["spec"]!["address"]!);
        Assert.Equal(address, (await DigAsync(dnsPort, $"{name}.mesh", "+short")).Trim());
    }

    [Fact]
    public async Task ServiceConnections_PreferTheirSite_Directly_KeepWorkingWithoutTheServer_AndHealWhenAnEndpointDies()
    {
        await using var fleet = new Fleet();
        await fleet.StartServerAsync();
        var port = new Uri(fleet.ServerUrl).Port;
        var token = await fleet.CreateJoinTokenAsync();
        // edge-a (site x) runs no endpoint and takes the service addresses; edge-b (site y) and
        // edge-c (site x) serve the service and leave the addresses to edge-a.
        var (processA, gatewayA) = await fleet.StartAgentAsync("edge-a", token, "site=x,role=caller");
        await fleet.StartAgentAsync("edge-b", token, "site=y,tier=b,serves=temps", null, null, "--service-addresses=false");
        var (processC, _) = await fleet.StartAgentAsync("edge-c", token, "site=x,tier=c,serves=temps", null, null, "--service-addresses=false");
        var name = "temps-" + Guid.NewGuid().ToString("N")[..8];
        var temps = Fleet.HelloApp + $"\n  placement:\n    nodeSelector:\n      tier: b\n  expose:\n    service: {name}\n    port: 8080\n";
        var (code, output) = await fleet.ClientAsync("apply", "-f", fleet.WriteManifest("temps.yaml", temps));
        Assert.True(code == 0, output);
        var address = (string)(await WaitForHealthyAsync(fleet, name, 1))["spec"]!["address"]!;
        var url = $"http://{address}:8080/reading";
        // An app on edge-a that calls the service (capability http-out), beside plain programs at its address.
        var callerModule = Path.Combine(fleet.Root, "manifests", "caller.wasm");
        File.Copy(Path.Combine(AppContext.BaseDirectory, "samples", "apps", "caller", "caller.wasm"), callerModule, overwrite: true);
        (code, output) = await fleet.ClientAsync("apply", "-f", fleet.WriteManifest("caller.yaml", $"""
            apiVersion: outpost.dev/v1
            kind: Application
            metadata:
              name: caller
            spec:
              module:
                path: caller.wasm
              triggers:
                http:
                  route: /call
              env:
                TARGET: http://{name}.mesh/reading
              capabilities:
                - http-out: [{name}.mesh]
              placement:
                nodeSelector:
                  role: caller
            """));
        Assert.True(code == 0, output);
        var call = gatewayA + "/call";
        string Called(string node) => $"caller on edge-a got 200 from http://{name}.mesh/reading: hello from {node} (path /reading)\n";

        // Only edge-b (another site) serves it: relayed by the server.
        await Eventually.UntilAsync(() => AskAsync(url), body => body == "hello from edge-b (path /reading)\n", Fleet.Patience, "edge-a to reach edge-b", b => b);
        Assert.True(await RouteCountAsync(gatewayA, "relayed") > 0);
        await Eventually.UntilAsync(() => AskAsync(call), body => body == Called("edge-b"), Fleet.Patience, "the caller app on edge-a to reach edge-b", b => b);

        // edge-c, on edge-a's own site, serves it too: edge-a goes there, directly.
        (code, output) = await fleet.ClientAsync("apply", "-f", fleet.WriteManifest("temps.yaml", temps.Replace("tier: b", "serves: temps", StringComparison.Ordinal)));
        Assert.True(code == 0, output);
        await WaitForHealthyAsync(fleet, name, 2);
        // The server, preferring edge-a's site, relays there as soon as it knows edge-c; direct once edge-a has heard of it too.
        // (A new endpoint admits callers once its own registry names them: a first call may be refused.)
        var (_, direct) = await Eventually.UntilAsync(async () => (Body: await AskAsync(url), Direct: await RouteCountAsync(gatewayA, "direct")),
            seen => seen.Body == "hello from edge-c (path /reading)\n" && seen.Direct > 0, Fleet.Patience, "edge-a to dial edge-c directly",
            seen => $"{seen.Body}, {seen.Direct} direct\n{processA.Output}");
        for (var i = 0; i < 5; i++)
        {
            Assert.Equal("hello from edge-c (path /reading)\n", await AskAsync(url));
            Assert.Equal(Called("edge-c"), await AskAsync(call));
        }

        // The cloud goes away: same-site traffic goes on, from the registry edge-a holds.
        await fleet.Server!.StopAsync();
        for (var i = 0; i < 5; i++)
        {
            Assert.Equal("hello from edge-c (path /reading)\n", await AskAsync(url));
            Assert.Equal(Called("edge-c"), await AskAsync(call));
        }

        Assert.True(await RouteCountAsync(gatewayA, "direct") >= direct + 10);

        // The cloud is back; then edge-c dies: the very next connection goes to edge-b, relayed.
        await fleet.StartServerAsync(port);
        foreach (var node in (string[])["edge-a", "edge-b", "edge-c"])
        {
            await fleet.WaitForNodeStateAsync(node, "Ready");
        }

        await WaitForHealthyAsync(fleet, name, 2);
        await Eventually.UntilAsync(() => AskAsync(url), body => body == "hello from edge-c (path /reading)\n", Fleet.Patience, "edge-a to reach edge-c again", b => b);

        // edge-a probes edge-c, which it may dial directly, and the server probes both endpoints' nodes.
        await Eventually.UntilAsync(() => PeerUpAsync(gatewayA, "edge-c"), up => up == 1, Fleet.Patience, "edge-a to probe edge-c", up => $"{up}");

        // edge-c hangs (stopped, its sockets still open, its link to the server still up for a while):
        // with no request made, edge-a's probes and the server's notice; then connections go to edge-b
        // at once, none of them wasting a dial on edge-c.
        processC.Signal("STOP");
        await Eventually.UntilAsync(() => PeerUpAsync(gatewayA, "edge-c"), up => up == 0, Fleet.Patience, "edge-a's probes to find edge-c silent", up => $"{up}");
        await Eventually.UntilAsync(async () => await EndpointAsync(fleet, name, "edge-c"), e => e?["answering"]?.GetValue<bool>() == false, Fleet.Patience,
            "the server's probes to find edge-c silent", e => e?.ToJsonString() ?? "no endpoint");
        var dialsFailed = await DirectCountAsync(gatewayA, "dial_failed");
        for (var i = 0; i < 3; i++)
        {
            Assert.Equal("hello from edge-b (path /reading)\n", await AskAsync(url));
            Assert.Equal(Called("edge-b"), await AskAsync(call));
        }

        Assert.Equal(dialsFailed, await DirectCountAsync(gatewayA, "dial_failed"));
        processC.Signal("CONT");
        await Eventually.UntilAsync(() => PeerUpAsync(gatewayA, "edge-c"), up => up == 1, Fleet.Patience, "edge-a's probes to find edge-c back", up => $"{up}");
        await Eventually.UntilAsync(() => AskAsync(url), body => body == "hello from edge-c (path /reading)\n", Fleet.Patience, "edge-a to go back to edge-c", b => b);
        Assert.True((await EndpointAsync(fleet, name, "edge-c"))?["answering"]?.GetValue<bool>() == true);

        processC.Kill();
        var killed = System.Diagnostics.Stopwatch.StartNew();
        Assert.Equal("hello from edge-b (path /reading)\n", await AskAsync(url));
        Assert.Equal(Called("edge-b"), await AskAsync(call));
        Assert.True(killed.Elapsed < TimeSpan.FromSeconds(5), $"the first requests after the kill took {killed.Elapsed.TotalMilliseconds:F0} ms");
    }

    /// <summary>One request on a connection of its own (so each one picks its endpoint afresh); the body, or the failure in words.</summary>
    private static async Task<string> AskAsync(string url)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, url);
        request.Headers.ConnectionClose = true;
        try
        {
            using var response = await Fleet.Http.SendAsync(request);
            return await response.Content.ReadAsStringAsync();
        }
        catch (HttpRequestException ex)
        {
            return "failed: " + ex.Message;
        }
    }

    /// <summary>outpost_node_mesh_peer_up for <paramref name="peer"/> on the node of <paramref name="gateway"/>; -1 while it is not probed.</summary>
    private static async Task<double> PeerUpAsync(string gateway, string peer) =>
        Sample(await MetricsAsync(gateway), "outpost_node_mesh_peer_up{", $"peer=\"{peer}\"") ?? -1;

    /// <summary>outpost_node_mesh_direct_total for <paramref name="kind"/> (dialed, dial_failed, ...) on the node of <paramref name="gateway"/>.</summary>
    private static async Task<double> DirectCountAsync(string gateway, string kind) =>
        Sample(await MetricsAsync(gateway), "outpost_node_mesh_direct_total{", $"event=\"{kind}\"") ?? 0;

    private static async Task<string> MetricsAsync(string gateway) => (await Fleet.GetAsync(gateway + "/_outpost/metrics")).Body;

    private static double? Sample(string metrics, string prefix, string label) =>
        metrics.Split('\n').Where(l => l.StartsWith(prefix, StringComparison.Ordinal) && l.Contains(label, StringComparison.Ordinal))
            .Select(l => (double?)double.Parse(l[(l.LastIndexOf(' ') + 1)..], System.Globalization.CultureInfo.InvariantCulture)).FirstOrDefault();

    /// <summary>The endpoint of service <paramref name="service"/> on <paramref name="node"/>, as <c>describe service</c> shows it.</summary>
    private static async Task<System.Text.Json.Nodes.JsonNode?> EndpointAsync(Fleet fleet, string service, string node) =>
        (await fleet.ApiGetAsync($"/apis/outpost.dev/v1/networkservices/{service}"))["status"]?["endpoints"]?.AsArray().FirstOrDefault(e => (string?)e?["node"] == node);

    /// <summary>outpost_node_mesh_connections_total for <paramref name="route"/> on the node of <paramref name="gateway"/>, all services together.</summary>
    private static async Task<double> RouteCountAsync(string gateway, string route)
    {
        var (_, metrics) = await Fleet.GetAsync(gateway + "/_outpost/metrics");
        return metrics.Split('\n').Where(l => l.StartsWith("outpost_node_mesh_connections_total{", StringComparison.Ordinal) && l.Contains($"route=\"{route}\"", StringComparison.Ordinal))
            .Sum(l => double.Parse(l[(l.LastIndexOf(' ') + 1)..], System.Globalization.CultureInfo.InvariantCulture));
    }

    private static async Task<string> DigAsync(int port, params string[] query)
    {
        var info = new System.Diagnostics.ProcessStartInfo("dig") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var arg in (string[])["@127.0.0.1", "-p", port.ToString(System.Globalization.CultureInfo.InvariantCulture), "+tries=3", "+time=2", .. query])
        {
            info.ArgumentList.Add(arg);
        }

        using var process = System.Diagnostics.Process.Start(info)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        Assert.True(process.ExitCode == 0, $"dig {string.Join(' ', query)}: {await stderr}{await stdout}");
        return await stdout;
    }
}
