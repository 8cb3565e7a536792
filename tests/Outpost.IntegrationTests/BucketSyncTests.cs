using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using Outpost.IntegrationTests.Faults;

namespace Outpost.IntegrationTests;

/// <summary>Buckets between real agents and a real server: directions, conflicts settled by policy, resume from cursors.</summary>
[Trait("Category", "aot")]
public sealed class BucketSyncTests
{
    private static string Bucket(string name, string direction, string policy = "lww") => $"""
        apiVersion: outpost.dev/v1
        kind: Bucket
        metadata:
          name: {name}
        spec:
          direction: {direction}
          conflictPolicy: {policy}
        """;

    private static async Task EdgePutAsync(string gateway, string bucket, string key, string value, HttpStatusCode expected = HttpStatusCode.NoContent)
    {
        using var response = await Fleet.Http.PutAsync($"{gateway}/_outpost/kv/{bucket}/{key}", new StringContent(value));
        Assert.Equal(expected, response.StatusCode);
    }

    private static Task EdgeValueAsync(string gateway, string bucket, string key, string expected) =>
        Fleet.WaitForBodyAsync($"{gateway}/_outpost/kv/{bucket}/{key}", expected, Fleet.Patience);

    private static Task<string> CloudValueAsync(Fleet fleet, string bucket, string key, string expected, params string[] extra) =>
        Eventually.UntilAsync(async () => await fleet.ClientAsync(["kv", "get", bucket, key, .. extra]), r => r.ExitCode == 0 && r.Output.Trim() == expected,
            Fleet.Patience, $"the cloud's {bucket}/{key} to be '{expected}'", r => r.Output.Trim()).ContinueWith(t => t.Result.Output, TaskScheduler.Default);

    private static async Task CloudPutAsync(Fleet fleet, string bucket, string key, string value)
    {
        var (code, output) = await fleet.ClientAsync("kv", "put", bucket, key, value);
        Assert.True(code == 0, output);
    }

    private static Task WaitForConnectedAsync(string gateway, bool connected) =>
        Eventually.UntilAsync(async () => (await Fleet.GetAsync(gateway + "/_outpost/status")).Body,
            status => status.Contains($"\"connected\":{(connected ? "true" : "false")}", StringComparison.Ordinal),
            Fleet.Patience, $"the agent to report connected={connected}");

    [Fact]
    public async Task TwoWayKeyWrittenOfflineAtTheEdgeAndInTheCloud_BothSidesConvergeToThePolicyWinner_TheLoserIsInTheConflictLog()
    {
        await using var fleet = new Fleet();
        await fleet.StartServerAsync();
        await using var proxy = new FaultProxy(new Uri(fleet.ServerUrl).Port);
        var (code, output) = await fleet.ClientAsync("apply", "-f", fleet.WriteManifest("buckets.yaml",
            Bucket("settings", "two-way") + "\n---\n" + Bucket("rules", "two-way", "cloud-wins")));
        Assert.True(code == 0, output);
        var token = await fleet.CreateJoinTokenAsync();
        var (agent, gateway) = await fleet.StartAgentAsync("edge-1", token, server: proxy.Url, extra: ["--keepalive", "1s"]);

        // Both ways while connected: no conflicts.
        await CloudPutAsync(fleet, "settings", "mode", "eco");
        await EdgeValueAsync(gateway, "settings", "mode", "eco");
        await EdgePutAsync(gateway, "settings", "greeting", "hi");
        await CloudValueAsync(fleet, "settings", "greeting", "hi");

        // The link dies; both sides keep writing the same keys.
        proxy.Mode = FaultMode.Blackhole;
        await WaitForConnectedAsync(gateway, false);
        await EdgePutAsync(gateway, "settings", "mode", "edge-mode");     // older: loses to the cloud's under lww
        await Task.Delay(20);
        await CloudPutAsync(fleet, "settings", "mode", "cloud-mode");
        await CloudPutAsync(fleet, "settings", "level", "cloud-level");   // older: loses to the edge's under lww
        await CloudPutAsync(fleet, "rules", "limit", "cloud-limit");
        await Task.Delay(20);
        await EdgePutAsync(gateway, "settings", "level", "edge-level");
        await EdgePutAsync(gateway, "rules", "limit", "edge-limit");       // newer, but the policy is cloud-wins
        await EdgeValueAsync(gateway, "settings", "mode", "edge-mode");   // the edge serves its own writes while offline

        proxy.Mode = FaultMode.Pass;
        proxy.ResetAll();
        await WaitForConnectedAsync(gateway, true);

        foreach (var (bucket, key, winner) in new[] { ("settings", "mode", "cloud-mode"), ("settings", "level", "edge-level"), ("rules", "limit", "cloud-limit") })
        {
            await CloudValueAsync(fleet, bucket, key, winner);
            await EdgeValueAsync(gateway, bucket, key, winner);
        }

        var settingsConflicts = await ConflictsAsync(fleet, "settings");
        Assert.Equal(2, settingsConflicts.Count);
        Assert.Contains(settingsConflicts, c => c is ("mode", "cloud-mode", "cloud", "edge-mode", "edge-1"));
        Assert.Contains(settingsConflicts, c => c is ("level", "edge-level", "edge-1", "cloud-level", "cloud"));
        Assert.Equal([("limit", "cloud-limit", "cloud", "edge-limit", "edge-1")], await ConflictsAsync(fleet, "rules"));

        (code, output) = await fleet.ClientAsync("kv", "list", "settings");
        Assert.True(code == 0, output);
        Assert.Contains("greeting", output, StringComparison.Ordinal);
        Assert.Contains("cloud-mode", output, StringComparison.Ordinal);
        (code, output) = await fleet.ClientAsync("kv", "conflicts", "rules");
        Assert.True(code == 0, output);
        Assert.Contains("edge-limit", output, StringComparison.Ordinal);
        Assert.False(agent.HasExited);
    }

    [Fact]
    public async Task Directions_AreEnforced_DeletionsTravel_AndARestartResumesFromTheCursors()
    {
        await using var fleet = new Fleet();
        await fleet.StartServerAsync();
        var (code, output) = await fleet.ClientAsync("apply", "-f", fleet.WriteManifest("buckets.yaml",
            Bucket("telemetry", "edge-to-cloud") + "\n---\n" + Bucket("flags", "cloud-to-edge") + "\n---\n" + Bucket("scratch", "edge-local")));
        Assert.True(code == 0, output);
        var token = await fleet.CreateJoinTokenAsync();
        var (agent, gateway) = await fleet.StartAgentAsync("edge-1", token);

        // edge-to-cloud: each node's keys land in its own keyspace; the cloud cannot write them.
        await EdgePutAsync(gateway, "telemetry", "last", "42");
        await CloudValueAsync(fleet, "telemetry", "last", "42", "--node", "edge-1");
        (code, output) = await fleet.ClientAsync("kv", "get", "telemetry", "last");
        Assert.Equal(1, code);
        Assert.Contains("--node", output, StringComparison.Ordinal);
        (code, output) = await fleet.ClientAsync("kv", "put", "telemetry", "last", "0");
        Assert.Equal(1, code);
        Assert.Contains("only its nodes write it", output, StringComparison.Ordinal);

        // cloud-to-edge: read-only on the node; a cloud deletion reaches it.
        await CloudPutAsync(fleet, "flags", "beta", "on");
        await EdgeValueAsync(gateway, "flags", "beta", "on");
        await EdgePutAsync(gateway, "flags", "beta", "off", HttpStatusCode.Forbidden);
        Assert.Equal("on", (await Fleet.GetAsync(gateway + "/_outpost/kv/flags/beta")).Body);
        (code, output) = await fleet.ClientAsync("kv", "delete", "flags", "beta");
        Assert.True(code == 0, output);
        await Fleet.WaitForStatusAsync(gateway + "/_outpost/kv/flags/beta", HttpStatusCode.NotFound, Fleet.Patience);

        // edge-local: the cloud holds nothing and says so.
        await EdgePutAsync(gateway, "scratch", "tmp", "x");
        (code, output) = await fleet.ClientAsync("kv", "list", "scratch");
        Assert.Equal(1, code);
        Assert.Contains("edge-local", output, StringComparison.Ordinal);

        // A restart resumes from the bucket cursors: nothing already held is sent again.
        var before = await KvUpdatesSentAsync(fleet);
        await agent.StopAsync();
        var (_, restarted) = await fleet.StartAgentAsync("edge-1", token);
        await WaitForConnectedAsync(restarted, true);
        await CloudPutAsync(fleet, "flags", "gamma", "on");
        await EdgeValueAsync(restarted, "flags", "gamma", "on");
        Assert.Equal(before + 1, await KvUpdatesSentAsync(fleet));
    }

    private static async Task<long> KvUpdatesSentAsync(Fleet fleet) =>
        (long?)(await fleet.ApiGetAsync("/api/v1/nodes/edge-1"))["status"]?["sync"]?["sent"]?["kv-update"]?["messages"] ?? 0;

    private static async Task<List<(string Key, string Winner, string WinnerOrigin, string Loser, string LoserOrigin)>> ConflictsAsync(Fleet fleet, string bucket)
    {
        var (code, output) = await fleet.ClientAsync("kv", "conflicts", bucket, "-o", "json");
        Assert.True(code == 0, output);
        return [.. JsonNode.Parse(output)!.AsArray().Select(c => ((string)c!["key"]!, (string)c["winner"]!["text"]!, (string)c["winner"]!["origin"]!,
            (string)c["loser"]!["text"]!, (string)c["loser"]!["origin"]!))];
    }
}
