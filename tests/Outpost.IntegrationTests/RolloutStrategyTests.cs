using System.Collections.Concurrent;
using System.Net;
using System.Text.Json.Nodes;
using Outpost.IntegrationTests.Faults;

namespace Outpost.IntegrationTests;

/// <summary>
/// Rollout strategies, health gates and rollback with a real server and real agents: canary
/// steps, a failing probe or error rate rolling the canaries back before the rest see the
/// revision, undo, pause/resume, a node rolling back on its own while cut off, and no failed
/// request while a healthy revision replaces another under load.
/// </summary>
public sealed class RolloutStrategyTests
{
    private const string RolloutPath = "/apis/outpost.dev/v1/applications/hello/rollout";

    /// <summary>The hello app answering "GREETING from NODE", with more spec lines (indented two spaces).</summary>
    private static string App(string greeting, string spec = "", string status = "200") => Fleet.HelloApp + $"""

          env:
            GREETING: {greeting}
            STATUS: "{status}"
        """ + (spec.Length > 0 ? "\n" + spec : "");

    private static async Task<List<(string Name, OutpostProcess Process, string Gateway)>> StartAgentsAsync(Fleet fleet, int count, params string[] extra)
    {
        var token = await fleet.CreateJoinTokenAsync();
        var started = await Task.WhenAll(Enumerable.Range(1, count).Select(async i =>
        {
            var name = $"edge-{i}";
            var (process, gateway) = await fleet.StartAgentAsync(name, token, extra: extra);
            return (name, process, gateway);
        }));
        return [.. started];
    }

    /// <summary>Starts the server and agents, applies the first revision and waits until every agent serves it.</summary>
    private static async Task<List<(string Name, OutpostProcess Process, string Gateway)>> StartServingAsync(Fleet fleet, int count, string yaml, string greeting, params string[] extra)
    {
        await fleet.StartServerAsync();
        var agents = await StartAgentsAsync(fleet, count, extra);
        await ApplyAsync(fleet, yaml);
        await ServeAllAsync(agents, greeting);
        return agents;
    }

    private static async Task ApplyAsync(Fleet fleet, string yaml)
    {
        var (code, output) = await fleet.ClientAsync("apply", "-f", fleet.WriteManifest("hello.yaml", yaml));
        Assert.True(code == 0, output + fleet.ServerErrors());
    }

    private static Task<JsonObject> WaitForPhaseAsync(Fleet fleet, long revision, string phase, TimeSpan timeout) =>
        Eventually.UntilAsync(() => fleet.ApiGetAsync(RolloutPath),
            r => (long?)r["status"]?["revision"] == revision && (string?)r["status"]?["phase"] == phase,
            timeout, $"the rollout of revision {revision} to be {phase}", r => r["status"]?.ToJsonString() ?? "no rollout");

    private static async Task ServeAllAsync(IEnumerable<(string Name, OutpostProcess Process, string Gateway)> agents, string greeting) =>
        await Task.WhenAll(agents.Select(a => Fleet.WaitForBodyAsync(a.Gateway + "/hello", $"{greeting} from {a.Name} (path /)\n", Fleet.Patience)));

    /// <summary>A probe that revision 2 of hello passes (healthz answers 200 whatever STATUS says), and a node-side gate of five requests.</summary>
    private const string EdgeGated = """
          readinessProbe:
            path: /hello/healthz
            expectStatus: 200
          rollout:
            progressDeadline: 2m
            errorRate:
              threshold: 0.5
              window: 1m
              minRequests: 5
        """;

    private static Task WaitForNodeOnRevisionAsync(Fleet fleet, string node, long revision) =>
        Eventually.UntilAsync(() => fleet.ApiGetAsync($"/api/v1/nodes/{node}"),
            n => (long?)n["status"]?["apps"]?["hello"]?["generation"] == revision && (string?)n["status"]?["apps"]?["hello"]?["state"] == "Ready",
            Fleet.Patience, $"node {node} to run revision {revision} Ready", n => n["status"]?["apps"]?.ToJsonString() ?? "");

    [Fact]
    public async Task Canary_OverFourNodes_ProceedsStepByStep_InTheOrderShown_AndCompletes()
    {
        await using var fleet = new Fleet();
        const string canary = """
              rollout:
                strategy: canary
                steps:
                - percent: 25
                  pause: 2s
                - percent: 50
                  pause: 2s
                - percent: 100
            """;
        var agents = await StartServingAsync(fleet, 4, App("one", canary), "one");

        await ApplyAsync(fleet, App("two", canary));
        var watch = fleet.ClientAsync("rollout", "status", "app/hello", "-w");
        var rollout = await WaitForPhaseAsync(fleet, 2, "Succeeded", 2 * Fleet.Patience);
        var order = rollout["nodes"]!.AsArray().Select(n => (string)n!["name"]!).ToList();
        Assert.Equal(order, rollout["status"]!["moved"]!.AsArray().Select(n => (string)n!));
        await ServeAllAsync(agents, "two");

        // The controller's own record of each step (not samples of it, which a slow poll could
        // miss): the first node alone, then the second, then the other two, in the order shown,
        // each step at least its 2 s pause after the one before.
        var events = (await fleet.ApiGetAsync("/api/v1/events?fieldSelector=involvedObject.name=hello"))["items"]!.AsArray()
            .Select(e => e!.AsObject()).Where(e => ((string)e["message"]!).StartsWith("revision 2", StringComparison.Ordinal)).ToList();
        Assert.Equal(["RolloutStarted", "RolloutStep", "RolloutStep", "RolloutStep", "RolloutSucceeded"], events.Select(e => (string)e["reason"]!));
        Assert.Equal("revision 2 from revision 1 (canary) to 4 nodes", (string)events[0]["message"]!);
        events.RemoveAt(0);
        Assert.Equal($"revision 2 step 1 of 3: moved {order[0]} (1 of 4 nodes on revision 2)", (string)events[0]["message"]!);
        Assert.Equal($"revision 2 step 2 of 3: moved {order[1]} (2 of 4 nodes on revision 2)", (string)events[1]["message"]!);
        Assert.Equal($"revision 2 step 3 of 3: moved {order[2]}, {order[3]} (4 of 4 nodes on revision 2)", (string)events[2]["message"]!);
        var at = events.Take(3).Select(e => DateTimeOffset.Parse((string)e["firstTimestamp"]!, System.Globalization.CultureInfo.InvariantCulture)).ToList();
        Assert.True(at[1] - at[0] >= TimeSpan.FromSeconds(2) && at[2] - at[1] >= TimeSpan.FromSeconds(2),
            $"steps at {string.Join(", ", at.Select(t => t.ToString("HH:mm:ss", System.Globalization.CultureInfo.InvariantCulture)))}");

        // `rollout status -w` followed it to the end (how much of it depends on how fast the CLI started) and exits 0.
        var (code, output) = await watch;
        Assert.True(code == 0, output);
        Assert.EndsWith("revision 2 Succeeded: revision 2 runs on all 4 nodes", output.TrimEnd(), StringComparison.Ordinal);
        var history = (await fleet.ClientAsync("rollout", "history", "app/hello")).Output;
        Assert.Matches(@"\n2 .*Succeeded", history);
    }

    [Fact]
    public async Task AFailingReadinessProbe_IsRolledBackOnTheCanary_AndNeverReachesTheOthers()
    {
        await using var fleet = new Fleet();
        const string canary = """
              rollout:
                strategy: canary
                steps:
                - percent: 25
                  pause: 10m
            """;
        var agents = await StartServingAsync(fleet, 4, App("one", canary), "one");

        // hello answers 200 where this probe expects 204: the canary refuses the revision.
        await ApplyAsync(fleet, App("two", canary + """

              readinessProbe:
                path: /hello
                expectStatus: 204
            """));
        var rollout = await WaitForPhaseAsync(fleet, 2, "RolledBack", Fleet.Patience);
        var message = (string)rollout["status"]!["message"]!;
        var canaryNode = rollout["nodes"]![0]!["name"]!.ToString();
        Assert.Contains($"node {canaryNode} failed revision 2", message, StringComparison.Ordinal);
        Assert.Contains("GET /hello answered 200 (expected 204)", message, StringComparison.Ordinal);
        Assert.Contains("every node is back on revision 1", message, StringComparison.Ordinal);

        await ServeAllAsync(agents, "one");
        foreach (var (name, process, _) in agents)
        {
            if (name == canaryNode)
            {
                await process.WaitForOutputAsync("revision 2 failed its readiness probe");
            }
            else
            {
                Assert.DoesNotContain("'hello' revision 2", process.Output, StringComparison.Ordinal); // it never even received it
            }
        }

        var (code, status) = await fleet.ClientAsync("rollout", "status", "app/hello");
        Assert.True(code == 1, status); // a rolled-back rollout is a failure
        Assert.Contains("RolledBack", status, StringComparison.Ordinal);
        var nodes = await fleet.ApiGetAsync(RolloutPath);
        Assert.All(nodes["nodes"]!.AsArray(), n => Assert.Equal(1, (long)n!["desiredRevision"]!));
        Assert.Matches(@"\n2 .*RolledBack", (await fleet.ClientAsync("rollout", "history", "app/hello")).Output);
    }

    [Fact]
    public async Task ARevisionServing500sAfterReadiness_TripsTheErrorRateGate_AndIsRolledBack()
    {
        await using var fleet = new Fleet();
        const string gated = """
              readinessProbe:
                path: /hello/healthz
                expectStatus: 200
              rollout:
                strategy: canary
                steps:
                - percent: 50
                  pause: 10m
                progressDeadline: 5s
                errorRate:
                  threshold: 0.5
                  window: 1m
                  minRequests: 10
            """;
        var agents = await StartServingAsync(fleet, 2, App("one", gated), "one", "--heartbeat", "1s");

        await ApplyAsync(fleet, App("two", gated, status: "500"));
        var rollout = await Eventually.UntilAsync(() => fleet.ApiGetAsync(RolloutPath),
            r => (long?)r["status"]?["revision"] == 2 && ((string?)r["status"]?["message"])?.Contains("pausing", StringComparison.Ordinal) == true,
            Fleet.Patience, "the canary to pass its probe", r => r["status"]?.ToJsonString() ?? "");
        var canary = agents.Single(a => a.Name == (string)rollout["status"]!["moved"]![0]!);
        var other = agents.Single(a => a.Name != canary.Name);

        // Past the node's own probation (the progress deadline), so the verdict is the server's.
        await canary.Process.WaitForOutputAsync("revision 2 stayed healthy");
        var answers = new List<(HttpStatusCode Status, string Body)>();
        for (var i = 0; i < 20; i++)
        {
            answers.Add(await Fleet.GetAsync(canary.Gateway + "/hello"));
        }

        // 500s from revision 2 until the server's verdict reaches the node (on a slow machine a
        // heartbeat can carry ten of them while this loop still runs), then only revision 1.
        var bad = answers.TakeWhile(a => a.Status == HttpStatusCode.InternalServerError).ToList();
        var summary = string.Join(", ", answers.Select(a => $"{(int)a.Status} {a.Body.Split(' ')[0]}"));
        Assert.True(bad.Count >= 10, summary);
        Assert.All(bad, a => Assert.Equal($"two from {canary.Name} (path /)\n", a.Body));
        Assert.All(answers.Skip(bad.Count), a => Assert.Equal((HttpStatusCode.OK, $"one from {canary.Name} (path /)\n"), a));

        rollout = await WaitForPhaseAsync(fleet, 2, "RolledBack", Fleet.Patience);
        // The gate trips on the heartbeat that takes the window over the threshold: how many of
        // the 20 answers that beat had carried depends on timing, but the counts must add up.
        var message = (string)rollout["status"]!["message"]!;
        var gate = System.Text.RegularExpressions.Regex.Match(message, @"error rate (\d+)% \((\d+) of (\d+) requests answered 5xx over 1m\) is above 50%");
        Assert.True(gate.Success, message);
        var (percent, errors, requests) = (int.Parse(gate.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture),
            int.Parse(gate.Groups[2].Value, System.Globalization.CultureInfo.InvariantCulture), int.Parse(gate.Groups[3].Value, System.Globalization.CultureInfo.InvariantCulture));
        Assert.True(requests >= 10 && errors <= 20 && errors <= requests && 2 * errors > requests && percent == (int)Math.Round(100.0 * errors / requests), message);
        Assert.Contains("every node is back on revision 1", message, StringComparison.Ordinal);

        // Every 500 revision 2 answered reaches the server's metrics, also those after the
        // heartbeat that tripped the gate: the node ships a swapped-out revision's last counts.
        var series = $$"""outpost_app_requests_total{app="hello",revision="2",node="{{canary.Name}}",class="server_error"} {{bad.Count}}""";
        await Eventually.UntilAsync(fleet.ServerMetricsAsync, m => m.Contains(series, StringComparison.Ordinal), Fleet.Patience,
            $"the server to count all {bad.Count} 500s of revision 2", m => string.Join("\n", m.Split('\n').Where(l => l.Contains("revision=\"2\"", StringComparison.Ordinal))));
        await ServeAllAsync(agents, "one");
        Assert.DoesNotContain("'hello' revision 2", other.Process.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Undo_RestoresAChosenRevision_OnEveryNodeAtOnce()
    {
        await using var fleet = new Fleet();
        const string slow = """
              rollout:
                strategy: canary
                steps:
                - percent: 30
                  pause: 1h
            """;
        var agents = await StartServingAsync(fleet, 3, App("one", slow), "one");
        await ApplyAsync(fleet, App("two", slow));
        var rollout = await Eventually.UntilAsync(() => fleet.ApiGetAsync(RolloutPath),
            r => ((string?)r["status"]?["message"])?.Contains("pausing", StringComparison.Ordinal) == true && (long?)r["status"]?["revision"] == 2,
            Fleet.Patience, "the canary to hold for its hour", r => r["status"]?.ToJsonString() ?? "");
        Assert.Single(rollout["status"]!["moved"]!.AsArray());

        // Back to revision 1: revision 3 goes to all three nodes at once, not a canary an hour long.
        var (code, output) = await fleet.ClientAsync("rollout", "undo", "app/hello", "--to-revision", "1");
        Assert.True(code == 0, output);
        Assert.Contains("rolled back to revision 1", output, StringComparison.Ordinal);
        rollout = await WaitForPhaseAsync(fleet, 3, "Succeeded", Fleet.Patience);
        Assert.Equal("undo", (string?)rollout["status"]!["strategy"]);
        Assert.All(rollout["nodes"]!.AsArray(), n => Assert.Equal(3, (long)n!["revision"]!));
        await ServeAllAsync(agents, "one");
        var history = (await fleet.ClientAsync("rollout", "history", "app/hello")).Output;
        Assert.Matches(@"\n3 .*Succeeded.*\(current\)", history);
        Assert.Matches(@"\n2 .*Superseded", history);
    }

    [Fact]
    public async Task PauseHoldsTheNextRevision_AndResumeContinues()
    {
        await using var fleet = new Fleet();
        var agents = await StartServingAsync(fleet, 2, App("one"), "one");
        await WaitForPhaseAsync(fleet, 1, "Succeeded", Fleet.Patience);

        var (code, output) = await fleet.ClientAsync("rollout", "pause", "app/hello");
        Assert.True(code == 0, output);
        await ApplyAsync(fleet, App("two", """
              rollout:
                strategy: rolling
                maxUnavailable: 1
            """));
        await WaitForPhaseAsync(fleet, 2, "Paused", Fleet.Patience);
        // Held: for ten looks (the controller would have moved a node within milliseconds of the
        // apply), no node moves and both keep answering "one".
        for (var look = 0; look < 10; look++)
        {
            var rollout = await fleet.ApiGetAsync(RolloutPath);
            Assert.Equal("Paused", (string?)rollout["status"]!["phase"]);
            Assert.Empty(rollout["status"]!["moved"]!.AsArray());
            foreach (var agent in agents)
            {
                Assert.Equal($"one from {agent.Name} (path /)\n", (await Fleet.GetAsync(agent.Gateway + "/hello")).Body);
            }
        }

        (code, output) = await fleet.ClientAsync("rollout", "resume", "app/hello");
        Assert.True(code == 0, output);
        await WaitForPhaseAsync(fleet, 2, "Succeeded", Fleet.Patience);
        await ServeAllAsync(agents, "two");
        var audit = (await fleet.ClientAsync("get", "audit")).Output;
        Assert.Contains("rollout of revision 1 paused", audit, StringComparison.Ordinal);
        Assert.Contains("rollout of revision 2 resumed", audit, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ANodeCutOff_RollsABadRevisionBackOnItsOwn_AndTheServerShowsItAfterReconnect()
    {
        await using var fleet = new Fleet();
        await fleet.StartServerAsync();
        await using var proxy = new FaultProxy(new Uri(fleet.ServerUrl).Port);
        var token = await fleet.CreateJoinTokenAsync();
        var (agent, gateway) = await fleet.StartAgentAsync("edge-1", token, server: proxy.Url, extra: ["--heartbeat", "1s"]);
        await ApplyAsync(fleet, App("one", EdgeGated));
        await Fleet.WaitForBodyAsync(gateway + "/hello", "one from edge-1 (path /)\n", Fleet.Patience);
        await ApplyAsync(fleet, App("two", EdgeGated, status: "500"));
        await WaitForNodeOnRevisionAsync(fleet, "edge-1", 2);
        await WaitForPhaseAsync(fleet, 2, "Succeeded", Fleet.Patience);

        // The link dies; the revision starts failing on the node.
        proxy.Mode = FaultMode.Blackhole;
        var answers = new List<(HttpStatusCode Status, string Body)>();
        while (answers.Count < 40 && (answers.Count == 0 || answers[^1].Status != HttpStatusCode.OK))
        {
            answers.Add(await Fleet.GetAsync(gateway + "/hello"));
        }

        var firstGood = answers.FindIndex(a => a.Status == HttpStatusCode.OK);
        Assert.True(firstGood is > 0 and <= 5, string.Join(", ", answers.Select(a => (int)a.Status)));
        Assert.All(answers.Take(firstGood), a => Assert.Equal(HttpStatusCode.InternalServerError, a.Status));
        Assert.Equal("one from edge-1 (path /)\n", answers[firstGood].Body);
        for (var i = 0; i < 10; i++)
        {
            Assert.Equal("one from edge-1 (path /)\n", (await Fleet.GetAsync(gateway + "/hello")).Body); // and stays back
        }

        // The server cannot know yet: to it the revision is out and healthy.
        var unaware = await fleet.ApiGetAsync(RolloutPath);
        Assert.Equal("Succeeded", (string?)unaware["status"]!["phase"]);

        proxy.Mode = FaultMode.Pass;
        proxy.ResetAll();
        var rollout = await WaitForPhaseAsync(fleet, 2, "RolledBack", Fleet.Patience);
        Assert.Contains("node edge-1 rolled revision 2 back: ", (string)rollout["status"]!["message"]!, StringComparison.Ordinal);
        Assert.Contains("requests answered 5xx", (string)rollout["status"]!["message"]!, StringComparison.Ordinal);
        await agent.WaitForOutputAsync("rolled back to revision 1 on this node");
        Assert.Matches(@"\n2 .*RolledBack", (await fleet.ClientAsync("rollout", "history", "app/hello")).Output);
        await WaitForNodeOnRevisionAsync(fleet, "edge-1", 1); // healthy again
    }

    [Fact]
    public async Task ARevisionTheNodeRollsBack_StillHasItsAnswersCountedAtTheServer()
    {
        await using var fleet = new Fleet();
        // Timed beats far apart: the counts of revision 2 must not depend on one falling between its answers and its rollback.
        var agents = await StartServingAsync(fleet, 1, App("one", EdgeGated), "one", "--heartbeat", "20s");
        var (name, _, gateway) = agents[0];
        await ApplyAsync(fleet, App("two", EdgeGated, status: "500"));
        await WaitForNodeOnRevisionAsync(fleet, name, 2);

        var errors = 0;
        while (errors < 40 && (await Fleet.GetAsync(gateway + "/hello")).Status == HttpStatusCode.InternalServerError)
        {
            errors++;
        }

        Assert.Equal(5, errors); // the node's own gate: five 500s, then revision 1 again
        var series = $$"""outpost_app_requests_total{app="hello",revision="2",node="{{name}}",class="server_error"} 5""";
        await Eventually.UntilAsync(fleet.ServerMetricsAsync, m => m.Contains(series, StringComparison.Ordinal), Fleet.Patience,
            "the server to count the five 500s of the revision the node rolled back",
            m => string.Join("\n", m.Split('\n').Where(l => l.Contains("revision=\"2\"", StringComparison.Ordinal))));
    }

    [Fact]
    public async Task AHealthyRolloutUnderSteadyLoad_AnswersNo5xx()
    {
        await using var fleet = new Fleet();
        const string rolling = """
              rollout:
                strategy: rolling
                maxUnavailable: 1
            """;
        var agents = await StartServingAsync(fleet, 2, App("one", rolling), "one");

        using var stop = new CancellationTokenSource();
        var statuses = new ConcurrentDictionary<int, int>();
        var bodies = new ConcurrentDictionary<string, int>(StringComparer.Ordinal);
        var failures = new ConcurrentQueue<string>();
        using var http = new HttpClient { Timeout = Fleet.Patience };
        var load = Enumerable.Range(0, 4).Select(i => Task.Run(async () =>
        {
            var gateway = agents[i % agents.Count].Gateway + "/hello";
            while (!stop.IsCancellationRequested)
            {
                try
                {
                    using var response = await http.GetAsync(gateway);
                    statuses.AddOrUpdate((int)response.StatusCode, 1, (_, n) => n + 1);
                    var body = await response.Content.ReadAsStringAsync();
                    bodies.AddOrUpdate(body.Split(' ')[0], 1, (_, n) => n + 1);
                }
                catch (HttpRequestException ex)
                {
                    failures.Enqueue(ex.Message);
                }
            }
        })).ToArray();

        // The load is running before the first change.
        await Eventually.UntilAsync(() => statuses.Values.Sum(), n => n >= 50, Fleet.Patience, "50 answers before the first change", n => $"{n} answers");
        foreach (var (revision, greeting) in new[] { (2L, "two"), (3L, "three") })
        {
            await ApplyAsync(fleet, App(greeting, rolling));
            await WaitForPhaseAsync(fleet, revision, "Succeeded", 2 * Fleet.Patience);
            await ServeAllAsync(agents, greeting);
        }

        await stop.CancelAsync();
        await Task.WhenAll(load);
        var summary = string.Join(", ", statuses.Select(p => $"{p.Key}: {p.Value}")) + " | " + string.Join(", ", bodies.Select(p => $"{p.Key}: {p.Value}"));
        Assert.True(failures.IsEmpty, string.Join("\n", failures.Take(5)));
        Assert.True(statuses.Keys.All(s => s == 200), summary);
        Assert.True(bodies.ContainsKey("one") && bodies.ContainsKey("two") && bodies.ContainsKey("three"), summary);
    }
}
