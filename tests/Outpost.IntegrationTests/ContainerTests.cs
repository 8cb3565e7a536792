using System.Diagnostics;
using System.Net;
using Outpost.Containers.Tests;

namespace Outpost.IntegrationTests;

/// <summary>
/// Container apps end to end: images built here, pushed to the server's registry with skopeo,
/// applied like any app, run by runc on a real agent beside a Wasm app, served by its gateway.
/// </summary>
public sealed class ContainerTests
{
    private static void SkipUnlessContainersRunHere()
    {
        Skip.IfNot(Environment.IsPrivilegedProcess, "containers need root");
        Skip.IfNot(OnPath("runc"), "runc is not installed");
        Skip.IfNot(OnPath("skopeo"), "skopeo is not installed");
        Skip.If(HelloSample.Bytes is null, "gcc is not installed: the sample cannot be built");
    }

    private static bool OnPath(string tool) => Environment.GetEnvironmentVariable("PATH")!.Split(':').Any(d => File.Exists(Path.Combine(d, tool)));

    /// <summary>Pushes the sample's image, saying <paramref name="greeting"/>, to the fleet's registry as hello:TAG.</summary>
    private static async Task PushAsync(Fleet fleet, string greeting, string tag)
    {
        var layout = Path.Combine(fleet.Root, "images", tag);
        HelloSample.Image(greeting).WriteLayout(layout, tag);
        var certs = Path.Combine(fleet.Root, "certs");
        Directory.CreateDirectory(certs);
        using (var ca = await fleet.ApiSendAsync(new HttpRequestMessage(HttpMethod.Get, new Uri(fleet.ServerUrl + "/cacerts")), authenticate: false))
        {
            await File.WriteAllTextAsync(Path.Combine(certs, "ca.crt"), await ca.Content.ReadAsStringAsync());
        }

        var policy = Path.Combine(fleet.Root, "policy.json");
        await File.WriteAllTextAsync(policy, """{"default":[{"type":"insecureAcceptAnything"}]}""");
        var token = Core.Api.ClientConfig.Parse(await File.ReadAllTextAsync(fleet.ConfigPath), fleet.ConfigPath).Token;
        using var skopeo = Process.Start(new ProcessStartInfo("skopeo",
            ["--policy", policy, "copy", "--dest-cert-dir", certs, "--dest-creds", $"ci:{token}", $"oci:{layout}:{tag}", $"docker://{new Uri(fleet.ServerUrl).Authority}/hello:{tag}"])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        })!;
        var output = skopeo.StandardOutput.ReadToEndAsync();
        var error = skopeo.StandardError.ReadToEndAsync();
        await skopeo.WaitForExitAsync();
        Assert.True(skopeo.ExitCode == 0, await output + await error);
    }

    private static string ContainerApp(string tag, string probe = "/box/healthz", string rollout = "") => $"""
        apiVersion: node.k8s.io/v1
        kind: RuntimeClass
        metadata:
          name: runc
        handler: runc
        ---
        apiVersion: outpost.dev/v1
        kind: Application
        metadata:
          name: box
        spec:
          runtimeClassName: runc
          image: hello:{tag}
          port: 8080
          limits:
            memoryMiB: 64
          triggers:
            http:
              route: /box
          readinessProbe:
            path: {probe}
            expectStatus: 200
        {rollout}
        """;

    /// <summary>Half the nodes first, then all: what the Wasm canary tests use.</summary>
    private const string Canary = """
          rollout:
            strategy: canary
            steps:
            - percent: 50
              pause: 2s
            - percent: 100
        """;

    /// <summary>A canary that stops at the first half (long pause): its first node decides.</summary>
    private const string FirstCanaryOnly = """
          rollout:
            strategy: canary
            steps:
            - percent: 50
              pause: 10m
        """;

    private static Task<System.Text.Json.Nodes.JsonObject> WaitForRolloutAsync(Fleet fleet, long revision, string phase) =>
        Eventually.UntilAsync(() => fleet.ApiGetAsync("/apis/outpost.dev/v1/applications/box/rollout"),
            r => (long?)r["status"]?["revision"] == revision && (string?)r["status"]?["phase"] == phase,
            Fleet.Patience, $"the rollout of revision {revision} to be {phase}", r => r["status"]?.ToJsonString() ?? "no rollout");

    private const string WasmApp = """
        apiVersion: outpost.dev/v1
        kind: Application
        metadata:
          name: hello
        spec:
          module:
            path: hello.wasm
          triggers:
            http:
              route: /hello
        """;

    [SkippableFact]
    public async Task AContainerApp_PushedWithSkopeo_ServesBesideAWasmApp_AndComesBackFromLocalStateWithTheServerDown()
    {
        SkipUnlessContainersRunHere();
        await using var fleet = new Fleet();
        await fleet.StartServerAsync();
        var token = await fleet.CreateJoinTokenAsync();
        var (agent, gateway) = await fleet.StartAgentAsync("edge-1", token);
        await PushAsync(fleet, "hello", "v1");

        var (code, output) = await fleet.ClientAsync("apply", "-f", fleet.WriteManifest("box.yaml", ContainerApp("v1")), "-f", fleet.WriteManifest("hello.yaml", WasmApp));
        Assert.True(code == 0, output);

        await Fleet.WaitForBodyAsync(gateway + "/box", "hello from container on edge-1 (revision 1)\n");
        Assert.Equal(HttpStatusCode.OK, (await Fleet.GetAsync(gateway + "/hello")).Status);
        var app = await fleet.ApiGetAsync("/apis/outpost.dev/v1/applications/box");
        Assert.StartsWith("sha256:", (string?)app["spec"]!["imageDigest"], StringComparison.Ordinal);

        // What the container writes is the app's log, as a Wasm app's stderr is.
        await Eventually.UntilAsync(() => fleet.ClientAsync("logs", "app/box", "--node", "edge-1", "--since", "10m"),
            r => r.ExitCode == 0 && r.Output.Contains("listening on :8080", StringComparison.Ordinal),
            Fleet.Patience, "the container's output in `outpost logs app/box`", r => r.Output);

        // exec runs beside the app's process, in its namespaces: a second server finds the port taken.
        // (--config before the command: all after -- is the command's.)
        (code, output) = await OutpostProcess.RunAsync(fleet.Home, "exec", "--config", fleet.ConfigPath, "node/edge-1", "app/box", "--", "/hello");
        Assert.True(code == 2, output);
        Assert.Contains("listen: Address already in use", output, StringComparison.Ordinal);
        (code, output) = await OutpostProcess.RunAsync(fleet.Home, "exec", "--config", fleet.ConfigPath, "node/edge-1", "app/hello", "--", "/bin/sh");
        Assert.True(code != 0 && output.Contains("app hello is a Wasm app", StringComparison.Ordinal), output);

        // The server goes away; the agent restarts with no one to sync from, and brings its container back.
        fleet.Server!.Kill();
        await agent.StopAsync();
        (agent, var restarted) = await fleet.StartAgentAsync("edge-1", token);
        await Fleet.WaitForBodyAsync(restarted + "/box", "hello from container on edge-1 (revision 1)\n");
        Assert.Equal(HttpStatusCode.OK, (await Fleet.GetAsync(restarted + "/hello")).Status);

        // Stopped as a service manager stops it, the agent stops its containers and leaves nothing behind.
        await agent.StopAsync();
        AssertNothingLeftBy(fleet.AgentDir("edge-1"));
    }

    /// <summary>No network namespace, address or cgroup of the agent's containers is left on the machine.</summary>
    private static void AssertNothingLeftBy(string agentDir)
    {
        var held = Directory.Exists("/run/outpost/net")
            ? Directory.EnumerateFiles("/run/outpost/net").Select(File.ReadAllText).Where(owner => owner.StartsWith(agentDir + " ", StringComparison.Ordinal)).ToList()
            : [];
        Assert.Empty(held);
        var prefix = "op" + Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(agentDir)))[..8] + "-";
        var cgroups = Directory.Exists("/sys/fs/cgroup/memory/outpost")
            ? Directory.EnumerateDirectories("/sys/fs/cgroup/memory/outpost").Where(d => Path.GetFileName(d).StartsWith(prefix, StringComparison.Ordinal)).ToList()
            : [];
        Assert.Empty(cgroups);
    }

    [SkippableFact]
    public async Task ANewImage_AppliedWithKubectl_RollsOutByCanary_AndOneWhoseProbeFails_IsRolledBackOnTheCanary()
    {
        SkipUnlessContainersRunHere();
        Kubectl.SkipUnlessInstalled();
        await using var fleet = new Fleet();
        await fleet.StartServerAsync();
        var token = await fleet.CreateJoinTokenAsync();
        var one = await fleet.StartAgentAsync("edge-1", token);
        var two = await fleet.StartAgentAsync("edge-2", token);
        await PushAsync(fleet, "hello", "v1");
        await PushAsync(fleet, "bonjour", "v2");
        await PushAsync(fleet, "hola", "v3");

        // kubectl applies it as it applies anything.
        using (var kubectl = new Kubectl(fleet))
        {
            var (applied, said) = await kubectl.RunAsync("apply", "-f", fleet.WriteManifest("box.yaml", ContainerApp("v1", rollout: Canary)));
            Assert.True(applied == 0, said);
        }

        await Fleet.WaitForBodyAsync(one.Gateway + "/box", "hello from container on edge-1 (revision 1)\n");
        await Fleet.WaitForBodyAsync(two.Gateway + "/box", "hello from container on edge-2 (revision 1)\n");

        // A second image, by canary: one node, a pause, then the other; each starts it beside the first, probes it, switches.
        var (code, output) = await fleet.ClientAsync("apply", "-f", fleet.WriteManifest("box.yaml", ContainerApp("v2", rollout: Canary)));
        Assert.True(code == 0, output + fleet.ServerErrors());
        await WaitForRolloutAsync(fleet, 2, "Succeeded");
        await Fleet.WaitForBodyAsync(one.Gateway + "/box", "bonjour from container on edge-1 (revision 2)\n");
        await Fleet.WaitForBodyAsync(two.Gateway + "/box", "bonjour from container on edge-2 (revision 2)\n");
        using (var kubectl = new Kubectl(fleet))
        {
            // The pods kubectl's node views read (describe node) show the runtime class and the image, pinned by digest.
            var (listed, pods) = await kubectl.RunAsync("get", "--raw", "/api/v1/pods");
            Assert.True(listed == 0, pods);
            Assert.Contains("\"runtimeClassName\":\"runc\"", pods, StringComparison.Ordinal);
            Assert.Contains("\"image\":\"hello:v2@sha256:", pods, StringComparison.Ordinal);
        }

        // A third whose readiness probe fails: refused on the canary node, the rollout is rolled back, the other node never gets it.
        (code, output) = await fleet.ClientAsync("apply", "-f", fleet.WriteManifest("box.yaml", ContainerApp("v3", probe: "/box/fail", rollout: FirstCanaryOnly)));
        Assert.True(code == 0, output + fleet.ServerErrors());
        var rollout = await WaitForRolloutAsync(fleet, 3, "RolledBack");
        Assert.Contains("readiness probe: GET /box/fail answered 500", rollout["status"]!.ToJsonString(), StringComparison.Ordinal);
        Assert.Equal((HttpStatusCode.OK, "bonjour from container on edge-1 (revision 2)\n"), await Fleet.GetAsync(one.Gateway + "/box"));
        Assert.Equal((HttpStatusCode.OK, "bonjour from container on edge-2 (revision 2)\n"), await Fleet.GetAsync(two.Gateway + "/box"));

        await one.Process.StopAsync();
        await two.Process.StopAsync();
        AssertNothingLeftBy(fleet.AgentDir("edge-1"));
        AssertNothingLeftBy(fleet.AgentDir("edge-2"));
    }

    [SkippableFact]
    public async Task TheSample_BuiltByItsScript_PushedWithOutpostPush_RunsFromItsManifest()
    {
        SkipUnlessContainersRunHere();
        await using var fleet = new Fleet();
        await fleet.StartServerAsync();
        var token = await fleet.CreateJoinTokenAsync();
        var (agent, gateway) = await fleet.StartAgentAsync("edge-1", token);
        var archive = Path.Combine(fleet.Root, "hello.tar");
        var build = await Tool.CompleteAsync(Process.Start(new ProcessStartInfo("bash", [Path.Combine(Repository.Root, "samples", "containers", "build.sh"), archive])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        })!, "samples/containers/build.sh");
        Assert.True(build.ExitCode == 0, build.Output);

        var (code, output) = await fleet.ClientAsync("push", archive, "--image", "hello:v1");
        Assert.True(code == 0, output);
        Assert.StartsWith("hello:v1@sha256:", output.Trim(), StringComparison.Ordinal);
        (code, output) = await fleet.ClientAsync("apply", "-f", Path.Combine(Repository.Root, "samples", "containers", "hello.yaml"));
        Assert.True(code == 0, output);
        await Fleet.WaitForBodyAsync(gateway + "/box", "hello from container on edge-1 (revision 1)\n");

        // A tar that is no image is refused, saying what it is not.
        var notAnImage = Path.Combine(fleet.Root, "not-an-image.tar");
        var junk = Directory.CreateDirectory(Path.Combine(fleet.Root, "junk")).FullName;
        await File.WriteAllTextAsync(Path.Combine(junk, "readme.txt"), "not an image");
        await System.Formats.Tar.TarFile.CreateFromDirectoryAsync(junk, notAnImage, includeBaseDirectory: false);
        (code, output) = await fleet.ClientAsync("push", notAnImage, "--image", "x:1");
        Assert.True(code != 0, output);
        Assert.Contains("is neither an OCI archive (index.json) nor a Docker archive (manifest.json)", output, StringComparison.Ordinal);

        await agent.StopAsync();
        AssertNothingLeftBy(fleet.AgentDir("edge-1"));
    }

    [SkippableFact]
    public async Task ANodeWithoutRunc_SaysWhy_AndContainerAppsAreNotPlacedOnIt_WhileItsWasmAppsServe()
    {
        SkipUnlessContainersRunHere();
        await using var fleet = new Fleet();
        await fleet.StartServerAsync();
        var token = await fleet.CreateJoinTokenAsync();
        var (agent, withRunc) = await fleet.StartAgentAsync("edge-1", token);
        // edge-2's PATH has no runc on it.
        var path = string.Join(':', Environment.GetEnvironmentVariable("PATH")!.Split(':').Where(d => !File.Exists(Path.Combine(d, "runc"))));
        var (_, withoutRunc) = await fleet.StartAgentWithEnvironmentAsync("edge-2", token, new Dictionary<string, string> { ["PATH"] = path });
        await PushAsync(fleet, "hello", "v1");

        var (code, output) = await fleet.ClientAsync("apply", "-f", fleet.WriteManifest("box.yaml", ContainerApp("v1")), "-f", fleet.WriteManifest("hello.yaml", WasmApp));
        Assert.True(code == 0, output);

        await Fleet.WaitForBodyAsync(withRunc + "/box", "hello from container on edge-1 (revision 1)\n");
        await Fleet.WaitForStatusAsync(withoutRunc + "/hello", HttpStatusCode.OK, Fleet.Patience);
        Assert.Equal(HttpStatusCode.NotFound, (await Fleet.GetAsync(withoutRunc + "/box")).Status);
        var node = await fleet.ApiGetAsync("/api/v1/nodes/edge-2");
        Assert.Equal("runc is not installed on this node (apt-get install runc)", (string?)node["status"]!["containerRuntimeProblem"]);
        Assert.DoesNotContain("runc", node["status"]!["runtimes"]!.AsArray().Select(r => (string?)r));
        Assert.Contains("wasm", node["status"]!["runtimes"]!.AsArray().Select(r => (string?)r));
        var rollout = await WaitForRolloutAsync(fleet, 1, "Succeeded");
        Assert.DoesNotContain("edge-2", rollout["nodes"]?.ToJsonString() ?? "", StringComparison.Ordinal);

        await agent.StopAsync();
        AssertNothingLeftBy(fleet.AgentDir("edge-1"));
    }
}
