namespace Outpost.IntegrationTests;

/// <summary>Node state follows the heartbeat lease: an idle node stays Ready; a frozen one goes NotReady, then back.</summary>
public sealed class LeaseTests
{
    [Fact]
    public async Task IdleNode_StaysReady_FrozenAgentGoesNotReady_AndComesBack()
    {
        await using var fleet = new Fleet();
        await fleet.StartServerAsync(0, "--node-lease", "1500ms");
        var token = await fleet.CreateJoinTokenAsync();
        var (agent, _) = await fleet.StartAgentAsync("edge-1", token, extra: ["--heartbeat", "300ms"]);

        // Idle for four leases: heartbeats alone must keep it Ready.
        await Task.Delay(TimeSpan.FromSeconds(6));
        Assert.Equal("Ready", await fleet.NodeStateAsync("edge-1"));
        var beats = (long)(await fleet.ApiGetAsync("/api/v1/nodes/edge-1"))["status"]!["sync"]!["received"]!["heartbeat"]!["messages"]!;
        Assert.True(beats >= 10, $"only {beats} heartbeats in 6 s at a 300 ms interval");

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
}
