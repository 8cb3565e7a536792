using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using Outpost.IntegrationTests.Faults;

namespace Outpost.IntegrationTests;

/// <summary>Config down, incrementally, across disconnections; a dead link is found and healed.</summary>
public sealed class ResumeTests
{
    private static string ConfigSet(int version) => $"""
        apiVersion: outpost.dev/v1
        kind: ConfigSet
        metadata:
          name: settings
        spec:
          data:
            greeting: "v{version}"
        """;

    /// <summary>A fleet of 100 apps (one module) plus the config app, all on every node.</summary>
    private static string HundredApps()
    {
        var yaml = new StringBuilder();
        for (var i = 0; i < 100; i++)
        {
            yaml.Append($"""
                apiVersion: outpost.dev/v1
                kind: Application
                metadata:
                  name: app-{i:D3}
                  labels:
                    tier: edge
                spec:
                  module:
                    path: hello.wasm
                  triggers:
                    http:
                      route: /app-{i:D3}
                  env:
                    GREETING: "hello from app {i}"
                  limits:
                    memoryMiB: 16
                ---

                """);
        }

        yaml.Append("""
            apiVersion: outpost.dev/v1
            kind: Application
            metadata:
              name: config
            spec:
              module:
                path: config.wasm
              triggers:
                http:
                  route: /config
              capabilities: [log, config, clock]
            """);
        return yaml.ToString();
    }

    private static JsonObject Sent(JsonObject node) => node["status"]?["sync"]?["sent"] as JsonObject ?? [];

    private static long Bytes(JsonObject sent, string kind) => (long?)sent[kind]?["bytes"] ?? 0;

    private static long Messages(JsonObject sent, string kind) => (long?)sent[kind]?["messages"] ?? 0;

    private static async Task<Fleet> FleetWithHundredAppsAsync(params string[] serverArgs)
    {
        var fleet = new Fleet();
        await fleet.StartServerAsync(0, serverArgs);
        Directory.CreateDirectory(Path.Combine(fleet.Root, "manifests"));
        File.WriteAllBytes(Path.Combine(fleet.Root, "manifests", "config.wasm"),
            Wasmtime.Module.ConvertText(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Modules", "config.wat"))));
        var (code, output) = await fleet.ClientAsync("apply", "-f", fleet.WriteManifest("apps.yaml", HundredApps()));
        Assert.True(code == 0, output);
        (code, output) = await fleet.ClientAsync("apply", "-f", fleet.WriteManifest("settings.yaml", ConfigSet(0)));
        Assert.True(code == 0, output);
        return fleet;
    }

    [Fact]
    public async Task HundredChangesWhileOffline_ReconnectGetsOnlyTheDelta()
    {
        await using var fleet = await FleetWithHundredAppsAsync();
        var token = await fleet.CreateJoinTokenAsync();
        var (agent, gateway) = await fleet.StartAgentAsync("edge-1", token);
        await Fleet.WaitForBodyAsync(gateway + "/config", "v0", Fleet.Patience);
        var before = Sent(await fleet.ApiGetAsync("/api/v1/nodes/edge-1"));
        var snapshotBytes = Bytes(before, "config-snapshot");
        Assert.True(snapshotBytes > 30_000, $"snapshot of 101 apps and a config set was only {snapshotBytes} bytes");

        await agent.StopAsync();
        for (var i = 1; i <= 100; i++)
        {
            await SetGreetingAsync(fleet, i);
        }

        var (_, restarted) = await fleet.StartAgentAsync("edge-1", token);
        await Fleet.WaitForBodyAsync(restarted + "/config", "v100", Fleet.Patience);

        await fleet.Server!.WaitForOutputAsync("resumes from revision");
        await fleet.Server.WaitForOutputAsync("delta since its acked revision");
        var after = await Eventually.UntilAsync(async () => Sent(await fleet.ApiGetAsync("/api/v1/nodes/edge-1")),
            s => Messages(s, "config-delta") > Messages(before, "config-delta"), Fleet.Patience, "the server to count the delta it sent", s => s.ToJsonString());
        var deltaBytes = Bytes(after, "config-delta") - Bytes(before, "config-delta");
        Assert.Equal(1, Messages(after, "config-snapshot")); // only the very first connection: the reconnect never got one
        // However many deltas the reconnect took, together they are a sliver of the snapshot.
        Assert.True(deltaBytes * 50 < snapshotBytes, $"delta of {deltaBytes} bytes is not under 2% of the {snapshotBytes}-byte snapshot");
    }

    [Fact]
    public async Task HistoryCompactedPastTheAckedRevision_ReconnectGetsASnapshot()
    {
        await using var fleet = await FleetWithHundredAppsAsync("--history-retention", "5");
        var token = await fleet.CreateJoinTokenAsync();
        var (agent, gateway) = await fleet.StartAgentAsync("edge-1", token);
        await Fleet.WaitForBodyAsync(gateway + "/config", "v0", Fleet.Patience);
        await agent.StopAsync();

        for (var i = 1; i <= 20; i++)
        {
            await SetGreetingAsync(fleet, i);
        }

        var (_, restarted) = await fleet.StartAgentAsync("edge-1", token);
        await Fleet.WaitForBodyAsync(restarted + "/config", "v20", Fleet.Patience);

        await fleet.Server!.WaitForOutputAsync("full snapshot");
        var sent = await Eventually.UntilAsync(async () => Sent(await fleet.ApiGetAsync("/api/v1/nodes/edge-1")),
            s => Messages(s, "config-snapshot") >= 2, Fleet.Patience, "the server to count the second snapshot", s => s.ToJsonString());
        Assert.Equal(2, Messages(sent, "config-snapshot")); // the first join and this reconnect, nothing else
        Assert.Equal(HttpStatusCode.OK, (await Fleet.GetAsync(restarted + "/app-042")).Status);
    }

    [Fact]
    public async Task BlackholedLink_IsDetected_AndTheAgentReconnectsAndResumes()
    {
        await using var fleet = new Fleet();
        await fleet.StartServerAsync();
        await using var proxy = new FaultProxy(new Uri(fleet.ServerUrl).Port);
        var token = await fleet.CreateJoinTokenAsync();
        var (agent, gateway) = await fleet.StartAgentAsync("edge-1", token, server: proxy.Url, extra: ["--keepalive", "1s"]);
        await WaitForConnectedAsync(gateway, true);

        proxy.Mode = FaultMode.Blackhole;
        await WaitForConnectedAsync(gateway, false); // found dead by its own pings, within seconds
        await agent.WaitForOutputAsync("Sync stream lost"); // the log line can trail the status the gateway reports

        // Meanwhile: the edge keeps publishing, the cloud keeps changing config.
        using (var response = await Fleet.Http.PostAsync(gateway + "/_outpost/topics/readings", new StringContent("during the outage")))
        {
            Assert.Equal(HttpStatusCode.Accepted, response.StatusCode);
        }

        var (code, output) = await fleet.ClientAsync("apply", "-f", fleet.WriteManifest("a.yaml", Fleet.HelloApp));
        Assert.True(code == 0, output);

        proxy.Mode = FaultMode.Pass;
        proxy.ResetAll();
        await WaitForConnectedAsync(gateway, true);
        await Fleet.WaitForStatusAsync(gateway + "/hello", HttpStatusCode.OK, Fleet.Patience);
        var records = await Eventually.UntilAsync(() => fleet.ReadTopicAsync("readings"), r => r.Count > 0, Fleet.Patience, "the outage's record at the server");

        Assert.Equal(["during the outage"], records.Select(r => r.Text));
        Assert.False(agent.HasExited);
    }

    /// <summary>
    /// One spec change of the config set, straight through the API (a merge patch, as `kubectl
    /// patch` sends): a hundred client processes would spend minutes starting up on a busy box.
    /// </summary>
    private static async Task SetGreetingAsync(Fleet fleet, int version)
    {
        using var request = new HttpRequestMessage(HttpMethod.Patch, fleet.ServerUrl + "/apis/outpost.dev/v1/configsets/settings")
        {
            Content = new StringContent(new JsonObject { ["spec"] = new JsonObject { ["data"] = new JsonObject { ["greeting"] = $"v{version}" } } }.ToJsonString(),
                Encoding.UTF8, "application/merge-patch+json"),
        };
        using var response = await fleet.ApiSendAsync(request);
        Assert.True(response.IsSuccessStatusCode, $"PATCH greeting v{version}: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}");
    }

    private static Task WaitForConnectedAsync(string gateway, bool connected) =>
        Eventually.UntilAsync(async () => (await Fleet.GetAsync(gateway + "/_outpost/status")).Body,
            status => status.Contains($"\"connected\":{(connected ? "true" : "false")}", StringComparison.Ordinal),
            Fleet.Patience, $"the agent to report connected={connected}");
}
