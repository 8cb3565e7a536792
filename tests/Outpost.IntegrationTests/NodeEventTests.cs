using System.Text.Json.Nodes;

namespace Outpost.IntegrationTests;

/// <summary>Node state changes are recorded as events: NotReady when beats stop, Offline when the stream is gone too, Ready when it is back.</summary>
public sealed class NodeEventTests
{
    [Fact]
    public async Task AFrozenThenStoppedNode_GoesNotReadyThenOffline_AndBackToReady_AsEvents()
    {
        await using var fleet = new Fleet();
        await fleet.StartServerAsync(0, Fleet.ShortLease);
        var token = await fleet.CreateJoinTokenAsync();
        var (agent, _) = await fleet.StartAgentAsync("edge-1", token, extra: Fleet.FastHeartbeat);
        await fleet.WaitForNodeStateAsync("edge-1", "Ready");

        // Frozen: the stream stays open but no beats come, so NotReady (and not Offline).
        agent.Signal("STOP");
        await fleet.WaitForNodeStateAsync("edge-1", "NotReady");
        await Eventually.UntilAsync(() => fleet.ApiGetAsync("/api/v1/events?fieldSelector=involvedObject.name=edge-1"),
            e => Reasons(e).Contains("NodeNotReady"), Fleet.Patience, "the NodeNotReady event", e => string.Join(",", Reasons(e)));
        Assert.Equal("NotReady", await fleet.NodeStateAsync("edge-1")); // still: a frozen node with its stream open is not Offline
        // Killed: the stream is gone and the lease long expired, so Offline.
        agent.Kill();
        agent.Signal("CONT");
        await fleet.WaitForNodeStateAsync("edge-1", "Offline");

        await fleet.StartAgentAsync("edge-1", token, extra: Fleet.FastHeartbeat);
        await fleet.WaitForNodeStateAsync("edge-1", "Ready");
        var events = await Eventually.UntilAsync(() => fleet.ApiGetAsync("/api/v1/events?fieldSelector=involvedObject.name=edge-1"),
            e => Reasons(e).Count(r => r == "NodeReady") >= 2, Fleet.Patience, "the second NodeReady event", e => string.Join(",", Reasons(e)));
        Assert.Equal(["NodeReady", "NodeNotReady", "NodeOffline", "NodeReady"], Reasons(events));
        Assert.Contains("missed its heartbeats", (string)events["items"]![1]!["message"]!, StringComparison.Ordinal);
        Assert.Equal("Warning", (string)events["items"]![2]!["type"]!);

        var (code, output) = await fleet.ClientAsync("get", "events");
        Assert.True(code == 0, output);
        Assert.Matches(@"Warning\s+NodeOffline\s+node/edge-1\s+node edge-1 is gone: stream closed and lease expired", output);
    }

    private static List<string> Reasons(JsonObject events) => [.. events["items"]!.AsArray().Select(e => (string)e!["reason"]!)];
}
