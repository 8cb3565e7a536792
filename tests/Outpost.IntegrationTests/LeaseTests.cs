namespace Outpost.IntegrationTests;

/// <summary>Node state follows the heartbeat lease: an idle node stays Ready; a frozen one goes NotReady, then back.</summary>
public sealed class LeaseTests
{
    [Fact]
    public async Task IdleNode_StaysReady_FrozenAgentGoesNotReady_AndComesBack()
    {
        await using var fleet = new Fleet();
        await fleet.StartServerAsync(0, Fleet.ShortLease);
        var token = await fleet.CreateJoinTokenAsync();
        var (agent, _) = await fleet.StartAgentAsync("edge-1", token, extra: Fleet.FastHeartbeat);
        await fleet.WaitForNodeStateAsync("edge-1", "Ready");

        // Idle for two leases' worth of beats: heartbeats alone must keep it Ready at every look.
        var seen = new List<string?>();
        var first = await HeartbeatsAsync(fleet);
        await Eventually.UntilAsync(async () =>
            {
                var node = await fleet.ApiGetAsync("/api/v1/nodes/edge-1");
                seen.Add((string?)node["status"]?["state"]);
                return Beats(node);
            },
            beats => beats >= first + (2 * Fleet.BeatsPerLease), Fleet.Patience, $"{2 * Fleet.BeatsPerLease} more heartbeats", beats => $"{beats - first} more");
        Assert.All(seen, state => Assert.Equal("Ready", state));

        agent.Signal("STOP");
        try
        {
            await fleet.WaitForNodeStateAsync("edge-1", "NotReady");
        }
        finally
        {
            agent.Signal("CONT");
        }

        await fleet.WaitForNodeStateAsync("edge-1", "Ready");
    }

    private static async Task<long> HeartbeatsAsync(Fleet fleet) => Beats(await fleet.ApiGetAsync("/api/v1/nodes/edge-1"));

    private static long Beats(System.Text.Json.Nodes.JsonObject node) => (long?)node["status"]?["sync"]?["received"]?["heartbeat"]?["messages"] ?? 0;
}
