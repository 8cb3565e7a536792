using System.Net;

namespace Outpost.IntegrationTests;

/// <summary>App metrics and node usage reach the server; both /metrics endpoints pass promtool; `outpost top` shows them.</summary>
public sealed class MonitoringTests
{
    [SkippableFact]
    public async Task AppTrafficAndNodeUsage_ReachTheServer_AndBothMetricsEndpointsPassPromtool()
    {
        Promtool.SkipUnlessInstalled();
        await using var fleet = new Fleet();
        await fleet.StartServerAsync();
        var token = await fleet.CreateJoinTokenAsync();
        var (_, gateway) = await fleet.StartAgentAsync("edge-1", token, extra: ["--heartbeat", "300ms"]);
        var (code, output) = await fleet.ClientAsync("apply", "-f", fleet.WriteManifest("hello.yaml", Fleet.HelloApp));
        Assert.True(code == 0, output);
        await Fleet.WaitForBodyAsync(gateway + "/hello", "hello from edge-1 (path /)\n", Fleet.Patience);
        var before = Successes((await Fleet.GetAsync(gateway + "/_outpost/metrics")).Body, "edge-1");
        for (var i = 0; i < 20; i++)
        {
            Assert.Equal(HttpStatusCode.OK, (await Fleet.GetAsync(gateway + "/hello")).Status);
        }

        // The agent's own exposition counts each answer of revision 1.
        var (status, agentMetrics) = await Fleet.GetAsync(gateway + "/_outpost/metrics");
        Assert.Equal(HttpStatusCode.OK, status);
        var total = before + 20;
        Assert.Equal(total, Successes(agentMetrics, "edge-1"));
        Assert.Contains($$"""outpost_app_request_duration_seconds_count{node="edge-1",app="hello",revision="1"} {{total}}""", agentMetrics, StringComparison.Ordinal);
        Assert.Matches(@"outpost_node_memory_total_bytes\{node=""edge-1""\} [1-9]\d+", agentMetrics);
        Assert.Matches(@"outpost_app_instance_memory_peak_bytes\{node=""edge-1"",app=""hello"",revision=""1""\} [1-9]\d+", agentMetrics);
        var agentCheck = await Promtool.CheckAsync(agentMetrics);
        Assert.True(agentCheck.ExitCode == 0 && agentCheck.Output.Trim().Length == 0, $"promtool on the agent's metrics: {agentCheck.Output}\n{agentMetrics}");

        // The server's: the deltas from the heartbeats add up to the same 20.
        var serverMetrics = await Eventually.UntilAsync(() => fleet.ServerMetricsAsync(),
            m => m.Contains($$"""outpost_app_requests_total{app="hello",revision="1",node="edge-1",class="success"} {{total}}""", StringComparison.Ordinal)
                && m.Contains("outpost_node_cpu_ratio{node=\"edge-1\"}", StringComparison.Ordinal),
            Fleet.Patience, $"the server's /metrics to count the {total} requests and the node's usage", m => m);
        Assert.Contains("""outpost_nodes{state="Ready"} 1""", serverMetrics, StringComparison.Ordinal);
        // The node families, as the API shows the node: Ready, its last beat (whole seconds), its outbox as last reported.
        Assert.Contains("""outpost_node_ready{node="edge-1"} 1""", serverMetrics, StringComparison.Ordinal);
        var beat = System.Text.RegularExpressions.Regex.Match(serverMetrics, """outpost_node_last_heartbeat_timestamp_seconds\{node="edge-1"\} (\d+)\n""");
        Assert.True(beat.Success, serverMetrics);
        Assert.InRange(long.Parse(beat.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture), DateTimeOffset.UtcNow.ToUnixTimeSeconds() - 60, DateTimeOffset.UtcNow.ToUnixTimeSeconds() + 1);
        Assert.Matches(@"outpost_outbox_quota_bytes\{node=""edge-1""\} [1-9]\d*\n", serverMetrics);
        Assert.Matches(@"outpost_outbox_pending_records\{node=""edge-1""\} \d+\n", serverMetrics);
        Assert.Contains($$"""outpost_app_request_duration_seconds_bucket{app="hello",revision="1",le="+Inf"} {{total}}""", serverMetrics, StringComparison.Ordinal);
        Assert.Matches(@"outpost_sync_messages_total\{node=""edge-1"",direction=""received"",kind=""heartbeat""\} [1-9]", serverMetrics);
        // The server's own collector: generations 0 to 2, and what it has allocated.
        Assert.Matches(@"outpost_server_gc_total\{generation=""2""\} \d+\n", serverMetrics);
        Assert.Matches(@"outpost_server_allocated_bytes_total [1-9]\d*\n", serverMetrics);
        var serverCheck = await Promtool.CheckAsync(serverMetrics);
        Assert.True(serverCheck.ExitCode == 0 && serverCheck.Output.Trim().Length == 0, $"promtool on the server's metrics: {serverCheck.Output}\n{serverMetrics}");

        // A scrape of named families: those alone, each whole.
        using (var some = new HttpRequestMessage(HttpMethod.Get, fleet.ServerUrl + "/metrics?name[]=outpost_nodes&name[]=outpost_node_ready"))
        {
            using var response = await fleet.ApiSendAsync(some);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            var named = await response.Content.ReadAsStringAsync();
            Assert.Contains("""outpost_nodes{state="Ready"} 1""", named, StringComparison.Ordinal);
            Assert.Contains("""outpost_nodes{state="Offline"} 0""", named, StringComparison.Ordinal);
            Assert.Contains("""outpost_node_ready{node="edge-1"} 1""", named, StringComparison.Ordinal);
            Assert.DoesNotContain("outpost_sync_messages_total", named, StringComparison.Ordinal);
            Assert.DoesNotContain("outpost_app_requests_total", named, StringComparison.Ordinal);
            Assert.DoesNotContain("outpost_node_cpu_ratio", named, StringComparison.Ordinal);
            var namedCheck = await Promtool.CheckAsync(named);
            Assert.True(namedCheck.ExitCode == 0 && namedCheck.Output.Trim().Length == 0, $"promtool on the named families: {namedCheck.Output}\n{named}");
        }

        using (var anonymous = new HttpRequestMessage(HttpMethod.Get, fleet.ServerUrl + "/metrics"))
        {
            using var refused = await fleet.ApiSendAsync(anonymous, authenticate: false);
            Assert.Equal(HttpStatusCode.Unauthorized, refused.StatusCode);
        }

        // `outpost top`: the minute store behind it.
        (code, output) = await fleet.ClientAsync("top", "apps");
        Assert.True(code == 0, output);
        Assert.Matches($@"hello\s+1\s+1\s+{total}\s+", output);
        (code, output) = await fleet.ClientAsync("top", "nodes");
        Assert.True(code == 0, output);
        Assert.Matches(@"edge-1\s+Ready\s+\d+(\.\d)?%\s+\d+(\.\d)?[KMG]i/\d+(\.\d)?[KMG]i", output);
        (code, output) = await fleet.ClientAsync("top", "apps", "--window", "2d");
        Assert.Equal(1, code);
        Assert.Contains("window '2d' must be a duration from 1m to 24h", output, StringComparison.Ordinal);
    }

    /// <summary>The agent's count of hello's successful answers.</summary>
    private static long Successes(string metrics, string node)
    {
        var match = System.Text.RegularExpressions.Regex.Match(metrics, $$"""outpost_app_requests_total\{node="{{node}}",app="hello",revision="1",class="success"\} (\d+)""");
        Assert.True(match.Success, metrics);
        return long.Parse(match.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
    }
}
