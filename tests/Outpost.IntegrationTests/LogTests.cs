using System.Globalization;
using System.Net;
using System.Text.RegularExpressions;

namespace Outpost.IntegrationTests;

/// <summary>App output reaches `outpost logs`: lines written while the server is away arrive after it returns, in order, once; a full ring drops the oldest and counts them.</summary>
[Trait("Category", "aot")]
public sealed class LogTests
{
    [Fact]
    public async Task LinesWrittenOffline_ArriveAfterReconnect_InOrder_WithoutDuplicates_AndQuotaDropsAreCounted()
    {
        await using var fleet = new Fleet();
        await fleet.StartServerAsync();
        var port = new Uri(fleet.ServerUrl).Port;
        var token = await fleet.CreateJoinTokenAsync();
        var (_, roomy) = await fleet.StartAgentAsync("edge-1", token, extra: ["--heartbeat", "300ms"]);
        // 2 KiB holds about 40 of hello's lines: the 200 written offline overflow it.
        var (_, tight) = await fleet.StartAgentAsync("edge-2", token, extra: ["--heartbeat", "300ms", "--log-quota", "2KiB"]);
        var (code, output) = await fleet.ClientAsync("apply", "-f", fleet.WriteManifest("hello.yaml", Fleet.HelloApp + """

              env:
                LOG_REQUESTS: "1"
            """));
        Assert.True(code == 0, output);
        await Fleet.WaitForBodyAsync(roomy + "/hello?probe", "hello from edge-1 (path /)\n", Fleet.Patience);
        await Fleet.WaitForBodyAsync(tight + "/hello?probe", "hello from edge-2 (path /)\n", Fleet.Patience);
        await RequestAsync(roomy, 1, 5);
        await Eventually.UntilAsync(() => LinesAsync(fleet, "edge-1"), l => l.Count == 5, Fleet.Patience, "the 5 online lines", l => string.Join(",", l));

        await fleet.Server!.StopAsync();
        await RequestAsync(roomy, 6, 200);
        await RequestAsync(tight, 1, 200);
        await fleet.StartServerAsync(port);

        var lines = await Eventually.UntilAsync(() => LinesAsync(fleet, "edge-1"), l => l.Count >= 200, Fleet.Patience,
            "the 195 lines written offline", l => $"{l.Count} lines");
        Assert.Equal(Enumerable.Range(1, 200), lines); // in order, each once

        // edge-2's ring kept only its newest lines: the oldest were dropped and counted.
        var kept = await Eventually.UntilAsync(() => LinesAsync(fleet, "edge-2"), l => l.Count > 0 && l[^1] == 200, Fleet.Patience,
            "edge-2's newest lines", l => string.Join(",", l));
        Assert.True(kept.Count < 100, $"a 2 KiB ring kept {kept.Count} lines");
        Assert.Equal(Enumerable.Range(200 - kept.Count + 1, kept.Count), kept); // a contiguous tail: oldest dropped first
        var metrics = await Eventually.UntilAsync(() => fleet.ServerMetricsAsync(), m => Dropped(m, "edge-2") > 0, Fleet.Patience, "edge-2's drops in /metrics", m => m);
        Assert.True(Dropped(metrics, "edge-2") >= 200 - kept.Count, metrics);
        Assert.Equal(0, Dropped(metrics, "edge-1"));

        // The CLI: an app's lines from one node, and a node's lines with the agent's own.
        (code, output) = await fleet.ClientAsync("logs", "app/hello", "--node", "edge-1", "--since", "10m");
        Assert.True(code == 0, output);
        Assert.Matches(@"^\d{4}-\d\d-\d\dT[\d:.]+Z edge-1 info: GET /hello\?n=1 -> 200$", output.Split('\n').First(l => l.Contains("n=1 ", StringComparison.Ordinal)));
        (code, output) = await fleet.ClientAsync("logs", "node/edge-1");
        Assert.True(code == 0, output);
        Assert.Contains("edge-1 hello@1 info: GET /hello?n=200 -> 200", output, StringComparison.Ordinal);
        Assert.Matches(@"edge-1 agent info: SyncClient: ", output);
        (code, output) = await fleet.ClientAsync("logs", "hello");
        Assert.Equal(1, code);
        Assert.Contains("'hello' is not app/NAME or node/NAME", output, StringComparison.Ordinal);
    }

    private static async Task RequestAsync(string gateway, int from, int to)
    {
        for (var n = from; n <= to; n++)
        {
            var (status, body) = await Fleet.GetAsync($"{gateway}/hello?n={n}");
            Assert.True(status == HttpStatusCode.OK, $"GET {gateway}/hello?n={n}: {(int)status} {body}"); // 0: no answer (the client's error)
        }
    }

    /// <summary>The n of every "GET /hello?n=N" line the server holds from a node, in the order `outpost logs` prints them.</summary>
    private static async Task<List<int>> LinesAsync(Fleet fleet, string node)
    {
        var list = await fleet.ApiGetAsync($"/apis/outpost.dev/v1/logs?app=hello&node={node}&limit=10000");
        return [.. list["items"]!.AsArray()
            .Select(i => Regex.Match((string)i!["message"]!, @"^GET /hello\?n=(\d+) -> 200$"))
            .Where(m => m.Success)
            .Select(m => int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture))];
    }

    private static long Dropped(string metrics, string node)
    {
        var match = Regex.Match(metrics, $$"""outpost_logs_dropped_total\{node="{{node}}"\} (\d+)""");
        return match.Success ? long.Parse(match.Groups[1].Value, CultureInfo.InvariantCulture) : 0;
    }
}
