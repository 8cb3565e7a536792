using System.Net;

namespace Outpost.IntegrationTests;

/// <summary>Host functions through a real agent: kv that survives a restart, publish into the outbox, config from ConfigSets.</summary>
[Trait("Category", "aot")]
public sealed class HostFunctionTests
{
    private static void WriteModule(Fleet fleet, string wat)
    {
        Directory.CreateDirectory(Path.Combine(fleet.Root, "manifests"));
        File.WriteAllBytes(Path.Combine(fleet.Root, "manifests", Path.ChangeExtension(wat, ".wasm")),
            Wasmtime.Module.ConvertText(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Modules", wat))));
    }

    private static string App(string name, string capabilities) => $"""
        apiVersion: outpost.dev/v1
        kind: Application
        metadata:
          name: {name}
        spec:
          module:
            path: {name}.wasm
          triggers:
            http:
              route: /{name}
          capabilities: [{capabilities}]
        """;

    [Fact]
    public async Task Kv_SurvivesAgentRestart_AndPublishLandsInTheOutbox()
    {
        await using var fleet = new Fleet();
        await fleet.StartServerAsync();
        var token = await fleet.CreateJoinTokenAsync();
        var (agent, gateway) = await fleet.StartAgentAsync("edge-1", token);
        WriteModule(fleet, "counter.wat");
        var (code, output) = await fleet.ClientAsync("apply", "-f", fleet.WriteManifest("counter.yaml", App("counter", "kv, publish")));
        Assert.True(code == 0, output);
        await Fleet.WaitForStatusAsync(gateway + "/counter", HttpStatusCode.OK, Fleet.Patience);
        Assert.Equal("count=2", (await Fleet.GetAsync(gateway + "/counter")).Body);

        await agent.StopAsync();
        var (_, restarted) = await fleet.StartAgentAsync("edge-1", token);

        Assert.Equal("count=3", (await Fleet.GetAsync(restarted + "/counter")).Body);

        // Each visit was published: through the outbox, it reaches the server once, in order.
        var records = await Eventually.UntilAsync(() => fleet.ReadTopicAsync("visits"), r => r.Count >= 3, Fleet.Patience,
            "three visits at the server", r => $"{r.Count} records");

        Assert.Equal(["1", "2", "3"], records.Select(r => r.Text));
        Assert.All(records, r => Assert.Equal("edge-1", r.Node));
    }

    [Fact]
    public async Task ConfigGet_ReadsConfigSetsThatTargetTheNode_AndFollowsUpdates()
    {
        await using var fleet = new Fleet();
        await fleet.StartServerAsync();
        var token = await fleet.CreateJoinTokenAsync();
        var (_, gateway) = await fleet.StartAgentAsync("edge-1", token, "site=a");
        WriteModule(fleet, "config.wat");
        var (code, output) = await fleet.ClientAsync("apply", "-f", fleet.WriteManifest("config.yaml", App("config", "log, config, clock")));
        Assert.True(code == 0, output);
        await Fleet.WaitForStatusAsync(gateway + "/config", HttpStatusCode.OK, Fleet.Patience);
        Assert.Equal("none", (await Fleet.GetAsync(gateway + "/config")).Body);

        const string ConfigSet = """
            apiVersion: outpost.dev/v1
            kind: ConfigSet
            metadata:
              name: greetings
            spec:
              data:
                greeting: "{0}"
              placement:
                nodeSelector:
                  site: a
            """;
        (code, output) = await fleet.ClientAsync("apply", "-f", fleet.WriteManifest("cs.yaml", ConfigSet.Replace("{0}", "hello", StringComparison.Ordinal)));
        Assert.True(code == 0, output);
        Assert.Contains("configset.outpost.dev/greetings created", output, StringComparison.Ordinal);
        await Fleet.WaitForBodyAsync(gateway + "/config", "hello");

        await fleet.ClientAsync("apply", "-f", fleet.WriteManifest("cs.yaml", ConfigSet.Replace("{0}", "bonjour", StringComparison.Ordinal)));
        await Fleet.WaitForBodyAsync(gateway + "/config", "bonjour");
    }

    [Fact]
    public async Task MissingCapability_IsRejectedAtApply_NamingImportAndCapability()
    {
        await using var fleet = new Fleet();
        await fleet.StartServerAsync();
        WriteModule(fleet, "counter.wat");

        var (code, output) = await fleet.ClientAsync("apply", "-f", fleet.WriteManifest("counter.yaml", App("counter", "kv")));

        Assert.NotEqual(0, code);
        Assert.Contains("spec.capabilities", output, StringComparison.Ordinal);
        Assert.Contains("outpost.publish", output, StringComparison.Ordinal);
        Assert.Contains("capability 'publish'", output, StringComparison.Ordinal);
        Assert.Empty((await fleet.GetJsonAsync("get", "apps"))["items"]!.AsArray());
    }
}
