using System.Net;
using Microsoft.Data.Sqlite;

namespace Outpost.IntegrationTests;

/// <summary>Timer and topic triggers through a real agent, with a device publishing via the gateway.</summary>
[Trait("Category", "aot")]
public sealed class TriggerTests
{
    [Fact]
    public async Task TimerPublishes_TopicSubscriberRuns_AndDevicesCanPublishThroughTheGateway()
    {
        await using var fleet = new Fleet();
        await fleet.StartServerAsync();
        var token = await fleet.CreateJoinTokenAsync();
        var (_, gateway) = await fleet.StartAgentAsync("edge-1", token);
        var dir = Path.Combine(fleet.Root, "manifests");
        Directory.CreateDirectory(dir);
        foreach (var name in new[] { "counter", "tally" })
        {
            File.WriteAllBytes(Path.Combine(dir, $"{name}.wasm"), Wasmtime.Module.ConvertText(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Modules", $"{name}.wat"))));
        }

        // The device's topic gets a subscriber of its own (tally counting under key "bells"), so
        // its count moves for the device's message alone, not for the ticker's.
        File.WriteAllBytes(Path.Combine(dir, "bells.wasm"), Wasmtime.Module.ConvertText(
            File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Modules", "tally.wat")).Replace("\"tally\"", "\"bells\"", StringComparison.Ordinal)));

        var (code, output) = await fleet.ClientAsync("apply", "-f", fleet.WriteManifest("apps.yaml", """
            apiVersion: outpost.dev/v1
            kind: Application
            metadata:
              name: ticker
            spec:
              module:
                path: counter.wasm
              triggers:
                timer:
                  every: 200ms
              capabilities: [kv, publish]
            ---
            apiVersion: outpost.dev/v1
            kind: Application
            metadata:
              name: tally
            spec:
              module:
                path: tally.wasm
              triggers:
                topic:
                  name: visits
              capabilities: [kv]
            ---
            apiVersion: outpost.dev/v1
            kind: Application
            metadata:
              name: bells
            spec:
              module:
                path: bells.wasm
              triggers:
                topic:
                  name: doorbell
              capabilities: [kv]
            """));
        Assert.True(code == 0, output);

        // The timer ticks, each tick publishes to "visits", each message runs tally.
        var data = Path.Combine(fleet.AgentDir("edge-1"), "data.db");
        await WaitUntilAsync(() => KvByte(data, "visits", "count") >= (byte)'3' && KvByte(data, "events", "tally") >= 3, "ticker and tally to run three times");

        // A device publishes through the gateway: durable before 202, delivered to its subscriber once.
        Assert.Equal(-1, KvByte(data, "events", "bells"));
        using var response = await Fleet.Http.PostAsync(gateway + "/_outpost/topics/doorbell", new StringContent("from a device"));
        Assert.Equal(HttpStatusCode.Accepted, response.StatusCode);
        Assert.Contains("\"sequence\":", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        await WaitUntilAsync(() => KvByte(data, "events", "bells") >= 1, "bells to run for the device's message");

        // Both the device's message and the ticker's went through the outbox to the server.
        await WaitForRecordsAsync(fleet, "doorbell", records => records.Any(r => r.Text == "from a device" && r.Node == "edge-1"));
        await WaitForRecordsAsync(fleet, "visits", records => records.Any(r => r.Text.Length == 1 && r.Node == "edge-1"));
        Assert.Equal(1, KvByte(data, "events", "bells")); // once: the message was not delivered twice

        using var bad = await Fleet.Http.PostAsync(gateway + "/_outpost/topics/no%20spaces", new StringContent("x"));
        Assert.Equal(HttpStatusCode.BadRequest, bad.StatusCode);
        using var get = await Fleet.Http.GetAsync(gateway + "/_outpost/topics/visits");
        Assert.Equal(HttpStatusCode.MethodNotAllowed, get.StatusCode);
    }

    private static int KvByte(string path, string bucket, string key)
    {
        using var db = new SqliteConnection($"Data Source={path};Mode=ReadOnly;Pooling=false");
        db.Open();
        using var command = db.CreateCommand();
        command.CommandText = "SELECT value FROM kv WHERE bucket = $b AND key = $k";
        command.Parameters.AddWithValue("$b", bucket);
        command.Parameters.AddWithValue("$k", key);
        return command.ExecuteScalar() is byte[] { Length: 1 } value ? value[0] : -1;
    }

    private static Task<List<(string Node, long Sequence, string Text)>> WaitForRecordsAsync(Fleet fleet, string topic, Func<List<(string Node, long Sequence, string Text)>, bool> condition) =>
        Eventually.UntilAsync(() => fleet.ReadTopicAsync(topic), condition, Fleet.Patience, $"the expected records of {topic} at the server", r => $"{r.Count} records");

    private static Task WaitUntilAsync(Func<bool> condition, string what) =>
        Eventually.UntilAsync(() =>
        {
            try
            {
                return condition();
            }
            catch (SqliteException)
            {
                return false; // the agent has not created the tables yet
            }
        }, done => done, Fleet.Patience, what);
}
