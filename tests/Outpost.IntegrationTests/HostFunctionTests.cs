using System.Net;
using Microsoft.Data.Sqlite;

namespace Outpost.IntegrationTests;

/// <summary>Host functions through a real agent: kv that survives a restart, publish into the outbox, config from ConfigSets.</summary>
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
        await Fleet.WaitForStatusAsync(gateway + "/counter", HttpStatusCode.OK, TimeSpan.FromSeconds(10));
        Assert.Equal("count=2", (await Fleet.GetAsync(gateway + "/counter")).Body);

        await agent.StopAsync();
        var (_, restarted) = await fleet.StartAgentAsync("edge-1", token);

        Assert.Equal("count=3", (await Fleet.GetAsync(restarted + "/counter")).Body);
        await fleet.DisposeAgentsAsync();
        using var db = new SqliteConnection($"Data Source={Path.Combine(fleet.AgentDir("edge-1"), "data.db")};Pooling=false");
        db.Open();
        using var command = db.CreateCommand();
        command.CommandText = "SELECT topic, app, payload FROM outbox ORDER BY sequence";
        using var reader = command.ExecuteReader();
        var records = new List<string>();
        while (reader.Read())
        {
            records.Add($"{reader.GetString(0)}/{reader.GetString(1)}/{System.Text.Encoding.UTF8.GetString((byte[])reader[2])}");
        }

        Assert.Equal(["visits/counter/1", "visits/counter/2", "visits/counter/3"], records);
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
        await Fleet.WaitForStatusAsync(gateway + "/config", HttpStatusCode.OK, TimeSpan.FromSeconds(10));
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
        await WaitForBodyAsync(gateway + "/config", "hello");

        await fleet.ClientAsync("apply", "-f", fleet.WriteManifest("cs.yaml", ConfigSet.Replace("{0}", "bonjour", StringComparison.Ordinal)));
        await WaitForBodyAsync(gateway + "/config", "bonjour");
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

    private static async Task WaitForBodyAsync(string url, string expected)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        var last = "";
        while (DateTime.UtcNow < deadline)
        {
            last = (await Fleet.GetAsync(url)).Body;
            if (last == expected)
            {
                return;
            }

            await Task.Delay(50);
        }

        Assert.Fail($"{url} answered '{last}', expected '{expected}'");
    }
}
