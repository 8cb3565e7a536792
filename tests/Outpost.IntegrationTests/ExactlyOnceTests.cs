using System.Net;
using Outpost.IntegrationTests.Faults;

namespace Outpost.IntegrationTests;

/// <summary>
/// Data up, exactly once, proven with real processes and a fault proxy: every test asserts
/// the exact records the server holds — all of them, once each, in per-node order.
/// </summary>
public sealed class ExactlyOnceTests
{
    private const string Topic = "readings";

    /// <summary>Publishes records r-00000.. through the agent's gateway, as devices would.</summary>
    private static async Task<HashSet<string>> PublishAsync(string gateway, int count, int start = 0)
    {
        var texts = Enumerable.Range(start, count).Select(i => $"r-{i:D5}-{Convert.ToHexString(Guid.NewGuid().ToByteArray())}{Convert.ToHexString(Guid.NewGuid().ToByteArray())}").ToList();
        using var client = new HttpClient { Timeout = Fleet.Patience };
        await Parallel.ForEachAsync(texts, new ParallelOptions { MaxDegreeOfParallelism = 8 }, async (text, ct) =>
        {
            using var response = await client.PostAsync(gateway + "/_outpost/topics/" + Topic, new StringContent(text), ct);
            Assert.Equal(HttpStatusCode.Accepted, response.StatusCode);
        });
        return [.. texts];
    }

    private static Task<List<(string Node, long Sequence, string Text)>> WaitForCountAsync(Fleet fleet, int count, TimeSpan timeout) =>
        Eventually.UntilAsync(() => fleet.ReadTopicAsync(Topic), r => r.Count >= count, timeout, $"{count} records at the server", r => $"{r.Count} records");

    private static async Task<long> IngestedAsync(Fleet fleet)
    {
        var topics = await fleet.ApiGetAsync("/apis/outpost.dev/v1/topics");
        return topics["items"]!.AsArray().Where(t => (string?)t!["metadata"]!["name"] == Topic).Select(t => (long)t!["status"]!["records"]!).FirstOrDefault();
    }

    /// <summary>All expected records, each once, and per node in strictly increasing sequence (= publish order).</summary>
    private static void AssertExactlyOnceInOrder(List<(string Node, long Sequence, string Text)> records, HashSet<string> expected)
    {
        Assert.Equal(expected.Count, records.Count);
        Assert.Equal(records.Count, records.Select(r => (r.Node, r.Sequence)).Distinct().Count());
        Assert.True(expected.SetEquals(records.Select(r => r.Text)), "the stored records are not exactly the published ones");
        foreach (var node in records.GroupBy(r => r.Node))
        {
            var sequences = node.Select(r => r.Sequence).ToList();
            Assert.True(sequences.Zip(sequences.Skip(1)).All(p => p.Second > p.First), $"records of {node.Key} are out of order");
        }
    }

    [Fact]
    public async Task PublishedWhileServerDown_AllArriveOnceInOrder()
    {
        await using var fleet = new Fleet();
        await fleet.StartServerAsync();
        var port = new Uri(fleet.ServerUrl).Port;
        var token = await fleet.CreateJoinTokenAsync();
        var (_, gateway) = await fleet.StartAgentAsync("edge-1", token);
        await fleet.Server!.StopAsync();

        var expected = await PublishAsync(gateway, 10_000);
        await fleet.StartServerAsync(port);

        AssertExactlyOnceInOrder(await WaitForCountAsync(fleet, 10_000, 2 * Fleet.Patience), expected);
    }

    [Fact]
    public async Task AgentKilledWhileShipping_NothingLostOrDuplicated()
    {
        await using var fleet = new Fleet();
        await fleet.StartServerAsync();
        await using var proxy = new FaultProxy(new Uri(fleet.ServerUrl).Port);
        var token = await fleet.CreateJoinTokenAsync();
        var (agent, gateway) = await fleet.StartAgentAsync("edge-1", token, server: proxy.Url);
        proxy.Mode = FaultMode.Blackhole;
        var expected = await PublishAsync(gateway, 10_000);

        // Slow the link so shipping is still going on when the agent dies; once the first batch
        // has landed, the link goes silent too, so however late this test looks, batches are
        // left on the wire and in the outbox.
        proxy.BandwidthBytesPerSecond = 20_000;
        proxy.Mode = FaultMode.Pass;
        proxy.ResetAll();
        await Eventually.UntilAsync(() => IngestedAsync(fleet), n => n > 0, Fleet.Patience, "the first batch to land");
        proxy.Mode = FaultMode.Blackhole;

        agent.Kill(); // SIGKILL: no chance to finish a batch or a delete
        var atKill = await IngestedAsync(fleet);
        Assert.InRange(atKill, 1, 9_999);

        proxy.BandwidthBytesPerSecond = 0;
        proxy.Mode = FaultMode.Pass;
        proxy.ResetAll();
        await fleet.StartAgentAsync("edge-1", token, server: proxy.Url);
        AssertExactlyOnceInOrder(await WaitForCountAsync(fleet, 10_000, 2 * Fleet.Patience), expected);
    }

    [Fact]
    public async Task ServerKilledMidBatch_NothingLostOrDuplicated()
    {
        await using var fleet = new Fleet();
        await fleet.StartServerAsync();
        var port = new Uri(fleet.ServerUrl).Port;
        await using var proxy = new FaultProxy(port);
        var token = await fleet.CreateJoinTokenAsync();
        var (agent, gateway) = await fleet.StartAgentAsync("edge-1", token, server: proxy.Url);
        proxy.Mode = FaultMode.Blackhole;
        var expected = await PublishAsync(gateway, 10_000);

        proxy.BandwidthBytesPerSecond = 300_000;
        proxy.Mode = FaultMode.Pass;
        proxy.ResetAll();
        var upBefore = proxy.UpBytes;
        await Eventually.UntilAsync(() => IngestedAsync(fleet), n => n > 0 && proxy.UpBytes - upBefore >= 100_000, Fleet.Patience, "a batch stored and the next on the wire");

        fleet.Server!.Kill(); // SIGKILL with a batch on the wire
        proxy.BandwidthBytesPerSecond = 0;
        await fleet.StartServerAsync(port);

        AssertExactlyOnceInOrder(await WaitForCountAsync(fleet, 10_000, 2 * Fleet.Patience), expected);
        Assert.False(agent.HasExited);
        var restart = (await fleet.ApiGetAsync("/api/v1/events?fieldSelector=involvedObject.name=outpost-server"))["items"]!.AsArray().Last()!;
        Assert.Equal("ServerStarted", (string)restart["reason"]!);
        Assert.StartsWith("the server started again, last known running ", (string)restart["message"]!, StringComparison.Ordinal);
    }

    [Fact]
    public async Task QuotaOverflow_DropsOldest_KeepsNewest_AndReportsTheCount()
    {
        await using var fleet = new Fleet();
        await fleet.StartServerAsync();
        var port = new Uri(fleet.ServerUrl).Port;
        var token = await fleet.CreateJoinTokenAsync();
        var (_, gateway) = await fleet.StartAgentAsync("edge-1", token, extra: ["--outbox-quota", "20KiB"]);
        await fleet.WaitForNodeStateAsync("edge-1", "Ready"); // joined: the node's status is what the test reads
        await fleet.Server!.StopAsync();

        // 300 records of 75 bytes = 22,500 bytes: the oldest must go to stay under 20 KiB.
        var expected = new List<string>();
        foreach (var i in Enumerable.Range(0, 300))
        {
            expected.AddRange(await PublishAsync(gateway, 1, i));
        }

        await fleet.StartServerAsync(port);
        var (dropped, records) = await Eventually.UntilAsync(async () =>
            {
                var node = await fleet.ApiGetAsync("/api/v1/nodes/edge-1");
                return ((long?)node["status"]?["outbox"]?["droppedTotal"] ?? 0, await fleet.ReadTopicAsync(Topic));
            },
            s => s.Item1 > 0 && s.Item2.Count + s.Item1 == 300, Fleet.Patience, "drops to be reported and the rest to arrive",
            s => $"dropped {s.Item1}, arrived {s.Item2.Count}");

        Assert.True(dropped > 0, "no drop was reported");
        Assert.Equal(300, records.Count + dropped);
        var sorted = expected.Order(StringComparer.Ordinal).ToList();
        Assert.Equal(sorted.TakeLast(records.Count), records.Select(r => r.Text).Order(StringComparer.Ordinal));
        Assert.Equal("dropOldest", (string?)(await fleet.ApiGetAsync("/api/v1/nodes/edge-1"))["status"]!["outbox"]!["overflowPolicy"]);
    }
}
