using System.Diagnostics;

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
        Assert.Equal("Ready", await StateAsync(fleet));
        var beats = (long)(await fleet.ApiGetAsync("/api/v1/nodes/edge-1"))["status"]!["sync"]!["received"]!["heartbeat"]!["messages"]!;
        Assert.True(beats >= 10, $"only {beats} heartbeats in 6 s at a 300 ms interval");

        Signal(agent, "STOP");
        try
        {
            await WaitForStateAsync(fleet, "NotReady");
        }
        finally
        {
            Signal(agent, "CONT");
        }

        await WaitForStateAsync(fleet, "Ready");
    }

    private static async Task<string?> StateAsync(Fleet fleet) =>
        (string?)(await fleet.ApiGetAsync("/api/v1/nodes/edge-1"))["status"]!["state"];

    private static Task WaitForStateAsync(Fleet fleet, string state) =>
        Eventually.UntilAsync(() => StateAsync(fleet), s => s == state, TimeSpan.FromSeconds(20), $"the node to become {state}");

    private static void Signal(OutpostProcess process, string signal)
    {
        using var kill = Process.Start("kill", [$"-{signal}", process.Pid.ToString(System.Globalization.CultureInfo.InvariantCulture)])!;
        kill.WaitForExit();
    }
}
