namespace Outpost.IntegrationTests;

/// <summary>The real kubectl reads Outpost over TLS with a bearer token: discovery, server-side tables, Kubernetes-shaped nodes.</summary>
[Trait("Category", "aot")]
public sealed class KubectlTests
{
    [SkippableFact]
    public async Task GetNodesWideYaml_AndApplications_Work()
    {
        Kubectl.SkipUnlessInstalled();
        await using var fleet = new Fleet();
        await fleet.StartServerAsync();
        var token = await fleet.CreateJoinTokenAsync();
        var agents = await Task.WhenAll(fleet.StartAgentAsync("edge-1", token), fleet.StartAgentAsync("edge-2", token));
        var (code, output) = await fleet.ClientAsync("apply", "-f", fleet.WriteManifest("hello.yaml", Fleet.HelloApp));
        Assert.True(code == 0, output);
        foreach (var (_, gateway) in agents)
        {
            await Fleet.WaitForBodyAsync(gateway + "/hello", $"hello from edge-{Array.FindIndex(agents, a => a.Gateway == gateway) + 1} (path /)\n", Fleet.Patience);
        }

        await fleet.WaitForNodeStateAsync("edge-1", "Ready");
        await fleet.WaitForNodeStateAsync("edge-2", "Ready");
        // Serving comes before the nodes' reports of it reach the server: wait for what kubectl shows.
        await Eventually.UntilAsync(() => fleet.ApiGetAsync("/apis/outpost.dev/v1/applications/hello/rollout"),
            r => (string?)r["status"]?["phase"] == "Succeeded" && r["nodes"]!.AsArray().All(n => (string?)n!["appState"] == "Ready" && (long?)n["revision"] == 1),
            Fleet.Patience, "both nodes to report hello Ready and its rollout Succeeded", r => r.ToJsonString());
        await Eventually.UntilAsync(() => fleet.ApiGetAsync("/api/v1/events?fieldSelector=involvedObject.name=edge-1"),
            e => e["items"]!.AsArray().Any(i => (string?)i!["reason"] == "NodeReady"), Fleet.Patience, "edge-1's NodeReady event", e => e.ToJsonString());
        using var kubectl = new Kubectl(fleet);
        (code, output) = await kubectl.RunAsync("version");
        Assert.True(code == 0, output);
        Assert.Contains("Server Version: v1.32.0-outpost.", output, StringComparison.Ordinal);

        (code, output) = await kubectl.RunAsync("get", "nodes");
        Assert.True(code == 0, output);
        var lines = output.Trim().Split('\n');
        Assert.Matches(@"^NAME\s+STATUS\s+ROLES\s+AGE\s+VERSION$", lines[0]);
        Assert.Matches(@"^edge-1\s+Ready\s+<none>\s+\d+[smhd]\S*\s+v\S+$", lines[1]);
        Assert.Matches(@"^edge-2\s+Ready\s+<none>\s+\d+[smhd]\S*\s+v\S+$", lines[2]);

        (code, output) = await kubectl.RunAsync("get", "nodes", "-o", "wide");
        Assert.True(code == 0, output);
        Assert.Matches(@"NAME\s+STATUS\s+ROLES\s+AGE\s+VERSION\s+INTERNAL-IP\s+OS-IMAGE\s+KERNEL-VERSION\s+CONTAINER-RUNTIME\s+SITE\s+CPU\s+MEMORY\s+DISK\s+LAST-HEARTBEAT", output);
        Assert.True(System.Text.RegularExpressions.Regex.IsMatch(output,
            @"edge-1\s+Ready\s+<none>\s+\d+[smhd]\S*\s+v\S+\s+127\.0\.0\.1\s+.+\s+\S+\s+outpost-wasm://wasmtime\s+<none>\s+(?:[\d.]+\s+){0,3}20\d\d-"), output); // no usage until the agent's first sample

        // Who the kubeconfig's token is: the dashboard asks the same at sign-in.
        (code, output) = await kubectl.RunAsync("auth", "whoami");
        Assert.True(code == 0, output);
        Assert.Matches(@"Username\s+token/", output);
        Assert.Matches(@"Groups\s+\[outpost:admin system:authenticated\]", output);

        (code, output) = await kubectl.RunAsync("get", "nodes", "-o", "yaml");
        Assert.True(code == 0, output);
        Assert.Contains("kind: List", output, StringComparison.Ordinal);
        Assert.Contains("kind: Node", output, StringComparison.Ordinal);
        Assert.Matches(@"- lastHeartbeatTime: .+\n\s+lastTransitionTime: .+\n\s+message: .+\n\s+reason: AgentReady\n\s+status: ""True""\n\s+type: Ready", output);
        Assert.Contains("containerRuntimeVersion: outpost-wasm://wasmtime", output, StringComparison.Ordinal);

        (code, output) = await kubectl.RunAsync("get", "applications");
        Assert.True(code == 0, output);
        Assert.Matches(@"NAME\s+REVISION\s+READY\s+ROLLOUT\s+TYPE\s+AGE", output);
        Assert.Matches(@"hello\s+1\s+2/2\s+Succeeded\s+core\s+\d+[smhd]\S*", output);
        (code, output) = await kubectl.RunAsync("get", "apps"); // the short name
        Assert.True(code == 0, output);
        Assert.Matches(@"hello\s+1\s+2/2\s+Succeeded\s+core\s+\d+[smhd]\S*", output);
        (code, output) = await kubectl.RunAsync("get", "apps", "-o", "wide");
        Assert.True(code == 0, output);
        Assert.Matches(@"hello\s+1\s+2/2\s+Succeeded\s+core\s+\d+[smhd]\S*\s+wasi_snapshot_preview1\s+", output);

        (code, output) = await kubectl.RunAsync("get", "app", "hello", "--show-labels");
        Assert.True(code == 0, output);
        Assert.Matches(@"hello\s+1\s+2/2\s+Succeeded\s+core\s+\d+[smhd]\S*\s+<none>", output);

        // describe reads the node, the pods on it (the apps), its lease and its events.
        (code, output) = await kubectl.RunAsync("describe", "node", "edge-1");
        Assert.True(code == 0, output);
        Assert.Matches(@"HolderIdentity:\s+edge-1", output);
        Assert.Matches(@"Ready\s+True\s+.+AgentReady", output);
        Assert.Matches(@"Container Runtime Version:\s+outpost-wasm://wasmtime", output);
        Assert.Matches(@"Non-terminated Pods:\s+\(1 in total\)", output);
        Assert.Matches(@"outpost\s+hello-edge-1\s+", output);
        Assert.Single(System.Text.RegularExpressions.Regex.Matches(output, @"Normal\s+NodeReady\s+\S+\s+outpost-server\s+node edge-1 is connected and beating"));

        (code, output) = await kubectl.RunAsync("get", "widgets");
        Assert.Equal(1, code);
        Assert.Contains("the server doesn't have a resource type \"widgets\"", output, StringComparison.Ordinal);
    }

    [SkippableFact]
    public async Task Apply_ClientAndServerSide_Delete_AndABadManifest()
    {
        Kubectl.SkipUnlessInstalled();
        await using var fleet = new Fleet();
        var (gateway, digest) = await StartWithHelloPushedAsync(fleet);
        string Manifest(string env) => fleet.WriteManifest("greeter.yaml", $"""
            apiVersion: outpost.dev/v1
            kind: Application
            metadata:
              name: greeter
            spec:
              module:
                digest: {digest}
              triggers:
                http:
                  route: /greet
            {env}
            """);

        using var kubectl = new Kubectl(fleet);
        var file = Manifest("  env:\n    GREETING: hi");
        var (code, output) = await kubectl.RunAsync("apply", "-f", file);
        Assert.True(code == 0, output);
        Assert.Equal("application.outpost.dev/greeter created", output.Trim());
        await Fleet.WaitForBodyAsync(gateway + "/greet", "hi from edge-1 (path /)\n", Fleet.Patience);
        (code, output) = await kubectl.RunAsync("apply", "-f", file);
        Assert.True(code == 0, output);
        Assert.Equal("application.outpost.dev/greeter unchanged", output.Trim());
        file = Manifest("  env:\n    GREETING: hello again");
        (code, output) = await kubectl.RunAsync("apply", "-f", file);
        Assert.True(code == 0, output);
        Assert.Equal("application.outpost.dev/greeter configured", output.Trim());
        await Fleet.WaitForBodyAsync(gateway + "/greet", "hello again from edge-1 (path /)\n", Fleet.Patience);

        // Server-side apply merges per field manager: a label another writer set survives,
        // the env this manager no longer applies goes.
        (code, output) = await kubectl.RunAsync("apply", "--server-side", "--force-conflicts", "-f", Manifest("  env:\n    GREETING: ssa"));
        Assert.True(code == 0, output);
        Assert.Equal("application.outpost.dev/greeter serverside-applied", output.Trim());
        await Fleet.WaitForBodyAsync(gateway + "/greet", "ssa from edge-1 (path /)\n", Fleet.Patience);
        (code, output) = await kubectl.RunAsync("label", "app", "greeter", "tier=web");
        Assert.True(code == 0, output);
        (code, output) = await kubectl.RunAsync("apply", "--server-side", "--force-conflicts", "-f", Manifest(""));
        Assert.True(code == 0, output);
        await Fleet.WaitForBodyAsync(gateway + "/greet", "hello from edge-1 (path /)\n", Fleet.Patience);
        var app = await fleet.ApiGetAsync("/apis/outpost.dev/v1/applications/greeter");
        Assert.Equal("web", (string)app["metadata"]!["labels"]!["tier"]!);
        Assert.Null(app["spec"]!["env"]);
        Assert.Equal(digest, (string)app["spec"]!["module"]!["digest"]!);

        (code, output) = await kubectl.RunAsync("delete", "-f", file);
        Assert.True(code == 0, output);
        Assert.Equal("application.outpost.dev \"greeter\" deleted", output.Trim());
        await Fleet.WaitForStatusAsync(gateway + "/greet", System.Net.HttpStatusCode.NotFound, Fleet.Patience);

        var bad = fleet.WriteManifest("bad.yaml", """
            apiVersion: outpost.dev/v1
            kind: Application
            metadata:
              name: broken
            spec:
              module:
                digest: sha256:nothex
              triggers:
                http:
                  route: /broken
              limits:
                memoryMB: 16
            """);
        (code, output) = await kubectl.RunAsync("apply", "-f", bad);
        Assert.Equal(1, code);
        Assert.Contains("spec.module.digest: 'sha256:nothex' is not a digest", output, StringComparison.Ordinal);
        Assert.Contains("spec.limits.memoryMB: unknown field", output, StringComparison.Ordinal);
        Assert.Empty((await fleet.ApiGetAsync("/apis/outpost.dev/v1/applications"))["items"]!.AsArray());

        // A NetworkService, as the seed's quick start applies its mesh: created, changed, read, deleted.
        string Service(int port) => fleet.WriteManifest("service.yaml", $"""
            apiVersion: outpost.dev/v1
            kind: NetworkService
            metadata:
              name: greetings
            spec:
              selector:
                app: greeter
              port: {port}
            """);
        (code, output) = await kubectl.RunAsync("apply", "-f", Service(8080));
        Assert.True(code == 0, output);
        Assert.Contains("networkservice.outpost.dev/greetings created", output, StringComparison.Ordinal);
        (code, output) = await kubectl.RunAsync("apply", "-f", Service(9090));
        Assert.True(code == 0, output);
        Assert.Contains("networkservice.outpost.dev/greetings configured", output, StringComparison.Ordinal);
        (code, output) = await kubectl.RunAsync("get", "svc", "greetings");
        Assert.True(code == 0, output);
        Assert.Matches(@"greetings\s+127\.77\.\d+\.\d+\s+9090", output);
        (code, output) = await kubectl.RunAsync("delete", "-f", Service(9090));
        Assert.True(code == 0, output);
        (code, output) = await kubectl.RunAsync("get", "svc", "greetings");
        Assert.NotEqual(0, code);
    }

    [SkippableFact]
    public async Task TheSeedsCommands_RuntimeClassThenAWasmApp()
    {
        Kubectl.SkipUnlessInstalled();
        await using var fleet = new Fleet();
        var (gateway, digest) = await StartWithHelloPushedAsync(fleet);
        using var kubectl = new Kubectl(fleet);

        var (code, output) = await kubectl.RunAsync("get", "nodes");
        Assert.True(code == 0, output);
        Assert.Matches(@"edge-1\s+Ready\s+", output);

        (code, output) = await kubectl.RunAsync("apply", "-f", fleet.WriteManifest("wasmedge-runtimeclass.yaml", """
            apiVersion: node.k8s.io/v1
            kind: RuntimeClass
            metadata:
              name: wasmedge
            handler: wasmedge
            """));
        Assert.True(code == 0, output);
        Assert.Equal("runtimeclass.node.k8s.io/wasmedge created", output.Trim());

        (code, output) = await kubectl.RunAsync("apply", "-f", fleet.WriteManifest("wasm-edge-app.yaml", $"""
            apiVersion: outpost.dev/v1
            kind: Application
            metadata:
              name: wasm-edge-app
            spec:
              runtimeClassName: wasmedge
              module:
                digest: {digest}
              triggers:
                http:
                  route: /edge
            """));
        Assert.True(code == 0, output);
        Assert.Equal("application.outpost.dev/wasm-edge-app created", output.Trim());
        await Fleet.WaitForBodyAsync(gateway + "/edge", "hello from edge-1 (path /)\n", Fleet.Patience);

        (code, output) = await kubectl.RunAsync("get", "runtimeclasses");
        Assert.True(code == 0, output);
        Assert.Matches(@"NAME\s+HANDLER\s+AGE", output);
        Assert.Matches(@"wasmedge\s+wasmedge\s+\d+[smhd]\S*", output);
        (code, output) = await kubectl.RunAsync("get", "runtimeclass", "wasmedge", "-o", "yaml");
        Assert.True(code == 0, output);
        Assert.Contains("handler: wasmedge", output, StringComparison.Ordinal);

        (code, output) = await kubectl.RunAsync("apply", "-f", fleet.WriteManifest("crun.yaml", """
            apiVersion: node.k8s.io/v1
            kind: RuntimeClass
            metadata:
              name: crun
            handler: crun
            """));
        Assert.Equal(1, code);
        Assert.Contains("handler: unknown handler 'crun'; Outpost runs WebAssembly and containers: use one of wasmedge, wasmtime, wasm, runc", output, StringComparison.Ordinal);
        (code, output) = await kubectl.RunAsync("apply", "-f", fleet.WriteManifest("orphan.yaml", $"""
            apiVersion: outpost.dev/v1
            kind: Application
            metadata:
              name: orphan
            spec:
              runtimeClassName: spin
              module:
                digest: {digest}
            """));
        Assert.Equal(1, code);
        Assert.Contains("spec.runtimeClassName: RuntimeClass \"spin\" not found", output, StringComparison.Ordinal);
    }

    [SkippableFact]
    public async Task GetNodesWatch_SeesANodeGoNotReady()
    {
        Kubectl.SkipUnlessInstalled();
        await using var fleet = new Fleet();
        await fleet.StartServerAsync(0, Fleet.ShortLease);
        var token = await fleet.CreateJoinTokenAsync();
        var (agent, _) = await fleet.StartAgentAsync("edge-1", token, extra: Fleet.FastHeartbeat);
        await fleet.WaitForNodeStateAsync("edge-1", "Ready");
        using var kubectl = new Kubectl(fleet);
        var (watch, lines) = kubectl.Start("get", "nodes", "-w");
        try
        {
            await Eventually.UntilAsync(() => lines.Any(l => System.Text.RegularExpressions.Regex.IsMatch(l, @"^edge-1\s+Ready\s+")), ok => ok, Fleet.Patience,
                "kubectl get nodes -w to list edge-1 Ready", _ => string.Join(" | ", lines));
            agent.Signal("STOP"); // beats stop, the stream stays open: NotReady
            await Eventually.UntilAsync(() => lines.Any(l => System.Text.RegularExpressions.Regex.IsMatch(l, @"^edge-1\s+NotReady\s+")), ok => ok, Fleet.Patience,
                "kubectl get nodes -w to print edge-1 NotReady", _ => string.Join(" | ", lines));
            Assert.False(watch.HasExited, string.Join(" | ", lines));
        }
        finally
        {
            agent.Signal("CONT");
            watch.Kill();
            await watch.WaitForExitAsync();
            watch.Dispose();
        }
    }

    /// <summary>A server and a Ready edge-1, with hello.wasm pushed: kubectl cannot upload a module, so manifests name it by digest.</summary>
    private static async Task<(string Gateway, string Digest)> StartWithHelloPushedAsync(Fleet fleet)
    {
        await fleet.StartServerAsync();
        var token = await fleet.CreateJoinTokenAsync();
        var (_, gateway) = await fleet.StartAgentAsync("edge-1", token);
        var (code, output) = await fleet.ClientAsync("push", Path.Combine(AppContext.BaseDirectory, "samples", "apps", "hello", "hello.wasm"));
        Assert.True(code == 0, output);
        var digest = output.Trim().Split('\n')[^1];
        Assert.Matches("^sha256:[0-9a-f]{64}$", digest);
        await fleet.WaitForNodeStateAsync("edge-1", "Ready");
        return (gateway, digest);
    }
}
