using System.Net;
using System.Text.RegularExpressions;

namespace Outpost.IntegrationTests;

/// <summary>
/// Wasm components on a real server and agent, deployed with `outpost apply`: a wasi:http/proxy
/// component serves its route, a wasi:cli/command component runs for a timer and for a topic,
/// a new revision rolls out and back, a hostile revision fails only the requests it should, and
/// components this host cannot run are refused at apply with the reason.
/// </summary>
[Trait("Category", "aot")]
public sealed class ComponentTests
{
    private static string Web(string module) => $"""
        apiVersion: outpost.dev/v1
        kind: Application
        metadata:
          name: web
        spec:
          module:
            path: {module}
          triggers:
            http:
              route: /
          limits:
            timeoutMs: 1000
            maxResponseBytes: 100000
          rollout:
            autoRollback: false
        """;

    private const string Commands = """
        apiVersion: outpost.dev/v1
        kind: Application
        metadata:
          name: ticker
        spec:
          module:
            path: ticker-c.wasm
          triggers:
            timer:
              every: 300ms
          env:
            PUBLISH_TO: ticks
          capabilities: [publish]
        ---
        apiVersion: outpost.dev/v1
        kind: Application
        metadata:
          name: echoer
        spec:
          module:
            path: ticker-c.wasm
          triggers:
            topic:
              name: ticks
          env:
            PUBLISH_TO: echoes
          capabilities: [publish]
        """;

    private static string CopyComponents(Fleet fleet)
    {
        var dir = Directory.CreateDirectory(Path.Combine(fleet.Root, "components")).FullName;
        foreach (var file in Directory.EnumerateFiles(Path.Combine(AppContext.BaseDirectory, "components"), "*.wasm"))
        {
            File.Copy(file, Path.Combine(dir, Path.GetFileName(file)), overwrite: true);
        }

        return dir;
    }

    private static async Task<(int Code, string Output)> ApplyAsync(Fleet fleet, string dir, string name, string yaml)
    {
        var path = Path.Combine(dir, name);
        await File.WriteAllTextAsync(path, yaml);
        return await fleet.ClientAsync("apply", "-f", path);
    }

    [Fact]
    public async Task ProxyAndCommandComponents_ServeAndRun_RollOutAndBack_AndHostileOnesFailOnlyTheirRequests()
    {
        await using var fleet = new Fleet();
        await fleet.StartServerAsync();
        var (_, gateway) = await fleet.StartAgentAsync("edge-1", await fleet.CreateJoinTokenAsync());
        var dir = CopyComponents(fleet);

        var (code, output) = await ApplyAsync(fleet, dir, "web.yaml", Web("http-c.wasm"));
        Assert.True(code == 0, output + fleet.ServerErrors());
        (code, output) = await ApplyAsync(fleet, dir, "commands.yaml", Commands);
        Assert.True(code == 0, output + fleet.ServerErrors());

        // The proxy component: method, path and query in; status, headers and body out.
        await Fleet.WaitForBodyAsync(gateway + "/trap?x=1", "hello from a component: GET /trap?x=1\n");
        using (var post = await Fleet.Http.PostAsync(gateway + "/echo", new ByteArrayContent(new byte[70_000])))
        {
            Assert.Equal(HttpStatusCode.OK, post.StatusCode);
            Assert.Equal(70_000, (await post.Content.ReadAsByteArrayAsync()).Length);
        }

        // The command component runs for each timer tick; each message it publishes runs it again, on the topic.
        await Eventually.UntilAsync(() => fleet.ReadTopicAsync("ticks"), r => r.Any(x => x.Text == "timer:" && x.Node == "edge-1"), Fleet.Patience, "ticks from the timer", r => $"{r.Count} records");
        await Eventually.UntilAsync(() => fleet.ReadTopicAsync("echoes"), r => r.Any(x => x.Text == "topic:timer:"), Fleet.Patience, "echoes from the topic trigger", r => $"{r.Count} records");

        // What each app runs, as `outpost get apps` shows it.
        (code, output) = await fleet.ClientAsync("get", "apps", "-o", "wide");
        Assert.True(code == 0, output);
        Assert.Matches(@"(?m)^web\s+1\s+\S+\s+\S+\s+component\s+/\s+\S+\s+wasi:http/proxy@0\.2\.0\s", output);
        Assert.Matches(@"(?m)^ticker\s+1\s+\S+\s+\S+\s+component\s+\S+\s+wasi:cli/command@0\.2\.12\s", output);

        // Revision 2: the probe component, whose paths misbehave on purpose.
        (code, output) = await ApplyAsync(fleet, dir, "web.yaml", Web("probe.wasm"));
        Assert.True(code == 0, output + fleet.ServerErrors());
        await Fleet.WaitForStatusAsync(gateway + "/trap", HttpStatusCode.InternalServerError, Fleet.Patience);
        Assert.Equal((HttpStatusCode.OK, "hello from a component: GET /hello\n"), await Fleet.GetAsync(gateway + "/hello"));
        Assert.Equal(HttpStatusCode.InternalServerError, (await Fleet.GetAsync(gateway + "/noset")).Status);
        Assert.Equal(HttpStatusCode.InternalServerError, (await Fleet.GetAsync(gateway + "/dropped")).Status);
        Assert.Equal(HttpStatusCode.GatewayTimeout, (await Fleet.GetAsync(gateway + "/loop")).Status);
        Assert.Equal(HttpStatusCode.InternalServerError, (await Fleet.GetAsync(gateway + "/big?size=200000")).Status);
        Assert.Equal((HttpStatusCode.OK, 65_536), await LengthAsync(gateway + "/big?size=65536"));
        using (var pastEnd = await Fleet.Http.PostAsync(gateway + "/pastend", new StringContent("abc")))
        {
            Assert.Equal("closed again\n", await pastEnd.Content.ReadAsStringAsync()); // a body read past its end is stream-error.closed, each time
        }

        Assert.Equal((HttpStatusCode.OK, "hello from a component: GET /hello\n"), await Fleet.GetAsync(gateway + "/hello"));

        // The response over the app's cap was cut and counted, and the failures are in the app's log.
        await Eventually.UntilAsync(() => fleet.ClientAsync("logs", "app/web", "--node", "edge-1", "--since", "10m"),
            r => r.ExitCode == 0 && r.Output.Contains("without setting its response-outparam", StringComparison.Ordinal)
                && r.Output.Contains("maxResponseBytes", StringComparison.Ordinal),
            Fleet.Patience, "the failed requests in `outpost logs app/web`", r => r.Output);

        // Back to revision 1.
        (code, output) = await fleet.ClientAsync("rollout", "undo", "app/web");
        Assert.True(code == 0, output);
        await Fleet.WaitForBodyAsync(gateway + "/trap", "hello from a component: GET /trap\n");
    }

    [Fact]
    public async Task ComponentsThisHostCannotRun_AreRefusedAtApply_NamingWhy()
    {
        await using var fleet = new Fleet();
        await fleet.StartServerAsync();
        var dir = CopyComponents(fleet);

        var (code, output) = await ApplyAsync(fleet, dir, "unknown.yaml", Web("unknown-import.wasm"));
        Assert.NotEqual(0, code);
        Assert.Contains("it imports 'acme:weather/forecast@1.0.0', which Outpost does not provide", output, StringComparison.Ordinal);

        (code, output) = await ApplyAsync(fleet, dir, "wasi03.yaml", Web("wasi-0.3.wasm"));
        Assert.NotEqual(0, code);
        Assert.Contains("is version 0.3.0-rc-2025-09-16; this host provides wasi:clocks/monotonic-clock at 0.2.x", output, StringComparison.Ordinal);

        // A command component cannot serve a route; an ungranted Outpost interface is named with its capability.
        (code, output) = await ApplyAsync(fleet, dir, "command-web.yaml", Web("ticker-c.wasm"));
        Assert.NotEqual(0, code);
        Assert.Contains("wasi:cli/command@0.2.12 component, which runs for timers and topics only", output, StringComparison.Ordinal);
        Assert.Contains("'outpost:edge/publish@0.1.0', which needs capability 'publish'", output, StringComparison.Ordinal);

        (code, output) = await fleet.ClientAsync("get", "apps");
        Assert.True(code == 0, output);
        Assert.DoesNotMatch(new Regex(@"(?m)^web\s"), output);
    }

    [Fact]
    public async Task OutpostWasmRun_RunsACommandComponent_AndServeRefusesIt()
    {
        using var scratch = new Outpost.Wasm.Tests.Wasi.Scratch();
        var home = scratch.Dir("home");
        var ticker = Path.Combine(AppContext.BaseDirectory, "components", "ticker-c.wasm");

        var run = await WasiTests.RunAsync(home, "payload", "wasm", "run", ticker, "--env", "OUTPOST_TRIGGER=topic", "--env", "PUBLISH_TO=demo");
        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Equal("published 13 bytes to demo\n", run.Stdout);
        Assert.Contains("topic:payload", run.Stderr, StringComparison.Ordinal); // what `outpost wasm run` does with a publish

        var serve = await WasiTests.RunAsync(home, "", "wasm", "serve", ticker);
        Assert.Equal(2, serve.ExitCode);
        Assert.Contains("is a wasi:cli/command@0.2.12 component: serve a wasi:http/proxy component", serve.Stderr, StringComparison.Ordinal);
    }

    private static async Task<(HttpStatusCode, int)> LengthAsync(string url)
    {
        using var response = await Fleet.Http.GetAsync(url);
        return (response.StatusCode, (await response.Content.ReadAsByteArrayAsync()).Length);
    }
}
