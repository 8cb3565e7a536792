using System.Net;

namespace Outpost.IntegrationTests;

/// <summary>The walking skeleton end to end: real server, real agents, real Wasmtime, real SQLite.</summary>
[Trait("Category", "aot")]
public sealed class FleetTests
{
    private const string AppForSiteA = """
        apiVersion: outpost.dev/v1
        kind: Application
        metadata:
          name: hello-a
        spec:
          module:
            path: hello.wasm
          triggers:
            http:
              route: /hello-a
          placement:
            nodeSelector:
              site: a
        """;

    [Fact]
    public async Task Join_Apply_Serve_Target_Delete()
    {
        await using var fleet = new Fleet();
        await fleet.StartServerAsync();
        var token = await fleet.CreateJoinTokenAsync();
        var (agentA, gatewayA) = await fleet.StartAgentAsync("edge-a", token, "site=a");
        var (_, gatewayB) = await fleet.StartAgentAsync("edge-b", token, "site=b");

        // Both nodes joined and are Ready.
        await WaitForNodesReadyAsync(fleet, "edge-a", "edge-b");

        // Neither process watches its data dir, where SQLite writes all the time (a watch for a
        // configuration file there woke on every write).
        Assert.DoesNotContain(await InodeAsync(Path.Combine(fleet.Root, "server")), InotifyWatches(fleet.Server!.Pid));
        Assert.DoesNotContain(await InodeAsync(fleet.AgentDir("edge-a")), InotifyWatches(agentA.Pid));

        // Apply: reachable on the matching node, never on the other. (How fast, against the 2 s
        // target, is measured by `bench/run.sh converge`: a shared test machine cannot time it.)
        var (code, output) = await fleet.ClientAsync("apply", "-f", fleet.WriteManifest("a.yaml", AppForSiteA));
        Assert.True(code == 0, output);
        Assert.Contains("application.outpost.dev/hello-a created", output, StringComparison.Ordinal);
        await Fleet.WaitForStatusAsync(gatewayA + "/hello-a", HttpStatusCode.OK, Fleet.Patience);
        var (_, body) = await Fleet.GetAsync(gatewayA + "/hello-a");
        Assert.Contains("hello", body, StringComparison.Ordinal);
        Assert.Contains("edge-a", body, StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.NotFound, (await Fleet.GetAsync(gatewayB + "/hello-a")).Status);

        // The app's object follows the API shape.
        var app = await fleet.GetJsonAsync("get", "apps", "hello-a");
        Assert.Equal("Application", (string?)app["kind"]);
        Assert.Equal(1, (long)app["metadata"]!["generation"]!);
        Assert.True(long.Parse((string)app["metadata"]!["resourceVersion"]!, System.Globalization.CultureInfo.InvariantCulture) > 0);
        Assert.StartsWith("sha256:", (string?)app["spec"]!["module"]!["digest"], StringComparison.Ordinal);

        // Re-applying the same manifest changes nothing.
        (code, output) = await fleet.ClientAsync("apply", "-f", fleet.WriteManifest("a.yaml", AppForSiteA));
        Assert.Contains("hello-a unchanged", output, StringComparison.Ordinal);

        // Delete: 404.
        (code, output) = await fleet.ClientAsync("delete", "app", "hello-a");
        Assert.True(code == 0, output);
        await Fleet.WaitForStatusAsync(gatewayA + "/hello-a", HttpStatusCode.NotFound, Fleet.Patience);
        Assert.Equal(HttpStatusCode.NotFound, (await Fleet.GetAsync(gatewayB + "/hello-a")).Status);
    }

    [Fact]
    public async Task Sigterm_StopsAgentAndServerCleanly_AsAServiceManagerExpects()
    {
        await using var fleet = new Fleet();
        await fleet.StartServerAsync();
        var (agent, gateway) = await fleet.StartAgentAsync("edge-1", await fleet.CreateJoinTokenAsync(), "site=a");
        var (code, output) = await fleet.ClientAsync("apply", "-f", fleet.WriteManifest("a.yaml", AppForSiteA));
        Assert.True(code == 0, output);
        await Fleet.WaitForStatusAsync(gateway + "/hello-a", HttpStatusCode.OK, Fleet.Patience);
        await WaitForNodesReadyAsync(fleet, "edge-1");

        // systemd's stop: SIGTERM, then a wait (TimeoutStopSec=30s in the unit). Exit 0 means the
        // role stopped on its own, not that something killed it after a grace period.
        await agent.StopAsync();
        Assert.True(agent.ExitCode == 0, $"the agent exited {agent.ExitCode}:\n{agent.Output}");
        Assert.DoesNotContain("BackgroundService failed", agent.Output, StringComparison.Ordinal);
        await fleet.Server!.StopAsync();
        Assert.True(fleet.Server.ExitCode == 0, $"the server exited {fleet.Server.ExitCode}:\n{fleet.Server.Output}");
    }

    [Fact]
    public async Task AgentRestartedWithServerDown_KeepsServingFromLocalState()
    {
        await using var fleet = new Fleet();
        await fleet.StartServerAsync();
        var token = await fleet.CreateJoinTokenAsync();
        // Compiling in a child process (`outpost wasm compile`), as the release binary does by default.
        var (agent, gateway) = await fleet.StartAgentAsync("edge-1", token, "site=a", extra: ["--compiler", "child"]);
        var (code, output) = await fleet.ClientAsync("apply", "-f", fleet.WriteManifest("a.yaml", AppForSiteA));
        Assert.True(code == 0, output);
        await Fleet.WaitForStatusAsync(gateway + "/hello-a", HttpStatusCode.OK, Fleet.Patience);
        var metrics = (await Fleet.GetAsync(gateway + "/_outpost/metrics")).Body;
        Assert.Contains("outpost_agent_modules_compiled_total{node=\"edge-1\",where=\"child\"} 1\n", metrics, StringComparison.Ordinal);
        Assert.Contains("outpost_agent_modules_compiled_total{node=\"edge-1\",where=\"agent\"} 0\n", metrics, StringComparison.Ordinal);

        // The server goes away, then the agent restarts with no one to sync from.
        fleet.Server!.Kill();
        await agent.StopAsync();
        var (_, restartedGateway) = await fleet.StartAgentAsync("edge-1", token, "site=a");

        var (status, body) = await Fleet.GetAsync(restartedGateway + "/hello-a");
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Contains("edge-1", body, StringComparison.Ordinal);
        // It runs what the child compiled: loaded from that file, compiled nowhere.
        metrics = (await Fleet.GetAsync(restartedGateway + "/_outpost/metrics")).Body;
        Assert.Contains("outpost_agent_modules_compiled_total{node=\"edge-1\",where=\"child\"} 0\n", metrics, StringComparison.Ordinal);
        Assert.Contains("outpost_agent_modules_compiled_total{node=\"edge-1\",where=\"agent\"} 0\n", metrics, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ServerRestart_AgentReconnectsOnItsOwn_AndReceivesNewApps()
    {
        await using var fleet = new Fleet();
        await fleet.StartServerAsync();
        var token = await fleet.CreateJoinTokenAsync();
        var (agent, gateway) = await fleet.StartAgentAsync("edge-1", token, "site=a");
        await WaitForNodesReadyAsync(fleet, "edge-1");

        // One connection to the server, the sync stream's: the join's channel closed its own (a
        // channel given a handler left its connection open, pinged for ever, unless told to own it).
        var port = new Uri(fleet.ServerUrl).Port;
        await WaitForConnectionsAsync(agent.Pid, port, 1);
        await fleet.Server!.StopAsync();
        await fleet.StartServerAsync(port);

        // Applied after the restart: only a reconnected agent can serve it.
        var (code, output) = await fleet.ClientAsync("apply", "-f", fleet.WriteManifest("a.yaml", AppForSiteA));
        Assert.True(code == 0, output);
        await Fleet.WaitForStatusAsync(gateway + "/hello-a", HttpStatusCode.OK, Fleet.Patience);
        await agent.WaitForOutputAsync("Sync stream lost");
        Assert.False(agent.HasExited);

        // The server's own outage left a trace: its second start says how long it was gone.
        var starts = (await fleet.ApiGetAsync("/api/v1/events?fieldSelector=involvedObject.name=outpost-server"))["items"]!.AsArray();
        Assert.Equal(["ServerStarted", "ServerStarted"], starts.Select(e => (string)e!["reason"]!));
        Assert.StartsWith("the server started for the first time", (string)starts[0]!["message"]!, StringComparison.Ordinal);
        Assert.StartsWith("the server started again, last known running ", (string)starts[1]!["message"]!, StringComparison.Ordinal);
    }

    [Fact]
    public async Task DeleteByFile_AndYamlOutput()
    {
        await using var fleet = new Fleet();
        await fleet.StartServerAsync();
        var manifest = fleet.WriteManifest("a.yaml", AppForSiteA);
        var (code, output) = await fleet.ClientAsync("apply", "-f", manifest);
        Assert.True(code == 0, output);

        (code, output) = await fleet.ClientAsync("get", "apps", "hello-a", "-o", "yaml");
        Assert.True(code == 0, output);
        Assert.Contains("kind: Application", output, StringComparison.Ordinal);
        Assert.Contains("route: /hello-a", output, StringComparison.Ordinal);

        (code, output) = await fleet.ClientAsync("delete", "-f", manifest);
        Assert.True(code == 0, output);
        Assert.Contains("application.outpost.dev \"hello-a\" deleted", output, StringComparison.Ordinal);

        (code, output) = await fleet.ClientAsync("delete", "-f", manifest);
        Assert.NotEqual(0, code);
        Assert.Contains("not found", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task WrongJoinToken_AgentExitsNonZero_AndNothingIsCreated()
    {
        await using var fleet = new Fleet();
        await fleet.StartServerAsync();
        var real = await fleet.CreateJoinTokenAsync();
        var parts = real.Split('_'); // opj_ID_SECRET_CAPIN: tamper with the secret, keep the (correct) pin
        parts[2] = parts[2][..^4] + (parts[2].EndsWith("0000", StringComparison.Ordinal) ? "1111" : "0000");
        var forged = string.Join('_', parts);

        await using var agent = OutpostProcess.Start(fleet.Home, "agent", "--server", fleet.ServerUrl, "--token", forged,
            "--name", "intruder", "--data-dir", fleet.AgentDir("intruder"), "--gateway", "127.0.0.1:0");
        var exit = await agent.WaitForExitAsync(OutpostProcess.ClientTimeout);

        Assert.NotEqual(0, exit);
        Assert.Contains("refused", agent.Output, StringComparison.Ordinal); // complete: the process has exited
        await fleet.Server!.WaitForOutputAsync("Join refused for node 'intruder'");
        var nodes = await fleet.GetJsonAsync("get", "nodes");
        Assert.Equal("NodeList", (string?)nodes["kind"]);
        Assert.Empty(nodes["items"]!.AsArray());
    }

    [Fact]
    public async Task Agent_TakesItsJoinTokenFromAFile_AndItsHelpNamesOneServerVariable()
    {
        await using var fleet = new Fleet();
        await fleet.StartServerAsync();
        var tokenFile = Path.Combine(fleet.Root, "join-token");
        await File.WriteAllTextAsync(tokenFile, await fleet.CreateJoinTokenAsync() + "\n");

        // Not in argv, where `ps` would show it to every user of the node.
        await using var agent = OutpostProcess.Start(fleet.Home, "agent", "--server", fleet.ServerUrl, "--token-file", tokenFile,
            "--name", "edge-1", "--data-dir", fleet.AgentDir("edge-1"), "--gateway", "127.0.0.1:0");
        await agent.WaitForLineAsync("node edge-1:", Fleet.StartTimeout);
        await fleet.WaitForNodeStateAsync("edge-1", "Ready");

        var (code, help) = await OutpostProcess.RunAsync(fleet.Home, "agent", "--help");
        Assert.True(code == 0, help);
        Assert.Contains("OUTPOST_SERVER", help, StringComparison.Ordinal);
        Assert.Contains("--token-file", help, StringComparison.Ordinal);
        Assert.DoesNotContain("OUTPOST_URL", help, StringComparison.Ordinal);
    }

    /// <summary>Waits until the process holds exactly <paramref name="expected"/> established TCP connections to the port (ss, iproute2).</summary>
    private static async Task WaitForConnectionsAsync(int pid, int port, int expected)
    {
        var deadline = DateTime.UtcNow + Fleet.Patience;
        var held = -1;
        while (DateTime.UtcNow < deadline)
        {
            using var ss = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo("ss", ["-tnpH", "state", "established", $"( dport = :{port} )"]) { RedirectStandardOutput = true })!;
            var output = await ss.StandardOutput.ReadToEndAsync();
            await ss.WaitForExitAsync();
            held = output.Split('\n').Count(line => line.Contains($"pid={pid},", StringComparison.Ordinal));
            if (held == expected)
            {
                return;
            }

            await Task.Delay(200);
        }

        Assert.Fail($"process {pid} holds {held} connections to port {port}, not {expected}");
    }

    private static Task WaitForNodesReadyAsync(Fleet fleet, params string[] names) =>
        Eventually.UntilAsync(() => fleet.GetJsonAsync("get", "nodes"),
            nodes => names.All(nodes["items"]!.AsArray().Where(n => (string?)n!["status"]!["state"] == "Ready").Select(n => (string)n!["metadata"]!["name"]!).Contains),
            Fleet.Patience, $"nodes {string.Join(", ", names)} to be Ready", nodes => nodes.ToJsonString());

    [Fact]
    public async Task InsecureHttp_IsExplicit_Warned_AndStillWorks()
    {
        await using var fleet = new Fleet();
        await fleet.StartServerAsync(0, "--insecure-http");
        Assert.StartsWith("http://", fleet.ServerUrl, StringComparison.Ordinal);
        await fleet.Server!.WaitForOutputAsync("--insecure-http: the API and agent sync travel in cleartext");
        var token = await fleet.CreateJoinTokenAsync();
        Assert.Null(Core.Tokens.TokenCodec.PinOf(token)); // no CA to pin

        var (agent, gateway) = await fleet.StartAgentAsync("edge-1", token);
        var (code, output) = await fleet.ClientAsync("apply", "-f", fleet.WriteManifest("hello.yaml", Fleet.HelloApp));
        Assert.True(code == 0, output);
        await Fleet.WaitForStatusAsync(gateway + "/hello", System.Net.HttpStatusCode.OK, Fleet.Patience);
        await agent.WaitForOutputAsync("plain http");
        Assert.False(File.Exists(Path.Combine(fleet.AgentDir("edge-1"), "node.crt")));
    }

    /// <summary>The inodes a process watches with inotify, from /proc/PID/fdinfo.</summary>
    private static List<string> InotifyWatches(int pid)
    {
        var watched = new List<string>();
        foreach (var fd in Directory.GetFiles($"/proc/{pid}/fd"))
        {
            if (new FileInfo(fd).LinkTarget == "anon_inode:inotify")
            {
                watched.AddRange(File.ReadLines($"/proc/{pid}/fdinfo/{Path.GetFileName(fd)}")
                    .Where(l => l.StartsWith("inotify ", StringComparison.Ordinal))
                    .Select(l => l.Split(' ').First(f => f.StartsWith("ino:", StringComparison.Ordinal))[4..]));
            }
        }

        return watched;
    }

    /// <summary>A file's inode number in hex, as fdinfo writes it.</summary>
    private static async Task<string> InodeAsync(string path)
    {
        using var stat = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo("stat", ["-c", "%i", path]) { RedirectStandardOutput = true })!;
        var inode = long.Parse((await stat.StandardOutput.ReadToEndAsync()).Trim(), System.Globalization.CultureInfo.InvariantCulture);
        await stat.WaitForExitAsync();
        return inode.ToString("x", System.Globalization.CultureInfo.InvariantCulture);
    }
}
