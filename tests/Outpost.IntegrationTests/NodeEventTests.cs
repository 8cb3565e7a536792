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
        agent.Kill(); // SIGKILL ends a stopped process too
        await fleet.WaitForNodeStateAsync("edge-1", "Offline");
        // The API derives the state when asked; the event comes from the monitor's next look (a
        // quarter of the lease later): wait for it before the node comes back.
        await Eventually.UntilAsync(() => fleet.ApiGetAsync("/api/v1/events?fieldSelector=involvedObject.name=edge-1"),
            e => Reasons(e).Contains("NodeOffline"), Fleet.Patience, "the NodeOffline event", e => string.Join(",", Reasons(e)));

        await fleet.StartAgentAsync("edge-1", token, extra: Fleet.FastHeartbeat);
        await fleet.WaitForNodeStateAsync("edge-1", "Ready");
        var events = await Eventually.UntilAsync(() => fleet.ApiGetAsync("/api/v1/events?fieldSelector=involvedObject.name=edge-1"),
            e => Reasons(e).SkipWhile(r => r != "NodeOffline").Contains("NodeReady"), Fleet.Patience, "a NodeReady event after the NodeOffline", e => string.Join(",", Reasons(e)));
        // Ready, then (frozen) NotReady, Offline once killed, Ready again. A node starved of CPU
        // for a whole lease on a loaded box could add a NotReady/Ready pair before the freeze,
        // so the steps are checked around the one Offline rather than as the whole list.
        var reasons = Reasons(events);
        var items = events["items"]!.AsArray();
        var offline = reasons.IndexOf("NodeOffline");
        Assert.True(offline >= 2 && reasons.Count(r => r == "NodeOffline") == 1 && offline == reasons.Count - 2, string.Join(",", reasons));
        Assert.Equal("NodeReady", reasons[0]);
        Assert.Equal("NodeNotReady", reasons[offline - 1]);
        Assert.Contains("missed its heartbeats", (string)items[offline - 1]!["message"]!, StringComparison.Ordinal);
        Assert.Equal("Warning", (string)items[offline]!["type"]!);
        Assert.Equal("NodeReady", reasons[offline + 1]);

        var (code, output) = await fleet.ClientAsync("get", "events");
        Assert.True(code == 0, output);
        Assert.Matches(@"Warning\s+NodeOffline\s+node/edge-1\s+node edge-1 is gone: stream closed and lease expired", output);
    }

    private static List<string> Reasons(JsonObject events) => [.. events["items"]!.AsArray().Select(e => (string)e!["reason"]!)];
}
