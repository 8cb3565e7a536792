namespace Outpost.IntegrationTests;

/// <summary>Application revisions with a real server and agent: history, and undo rolling the fleet back.</summary>
[Trait("Category", "aot")]
public sealed class RolloutTests
{
    private static string Greeting(string text) => Fleet.HelloApp + $"""

          env:
            GREETING: {text}
        """;

    [Fact]
    public async Task EverySpecChangeIsARevision_AndUndoRollsTheNodesBack()
    {
        await using var fleet = new Fleet();
        await fleet.StartServerAsync();
        var token = await fleet.CreateJoinTokenAsync();
        var (_, gateway) = await fleet.StartAgentAsync("edge-1", token);
        foreach (var text in new[] { "one", "two", "three" })
        {
            var (code, output) = await fleet.ClientAsync("apply", "-f", fleet.WriteManifest("hello.yaml", Greeting(text)));
            Assert.True(code == 0, output);
        }

        await Fleet.WaitForBodyAsync(gateway + "/hello", "three from edge-1 (path /)\n", Fleet.Patience);
        var (historyCode, history) = await fleet.ClientAsync("rollout", "history", "app/hello");
        Assert.True(historyCode == 0, history);
        var lines = history.Trim().Split('\n');
        Assert.Equal(4, lines.Length); // header and three revisions, newest first
        Assert.StartsWith("3", lines[1], StringComparison.Ordinal);
        Assert.Contains("(current)", lines[1], StringComparison.Ordinal);
        Assert.Matches(@"^3 .* env\.GREETING ", lines[1]); // the change cause: every revision has hello's digest
        Assert.Matches(@"^1 .* created ", lines[3]);

        // Back one revision: revision 4 carries revision 2's spec, and the node serves it.
        var (undoCode, undo) = await fleet.ClientAsync("rollout", "undo", "app/hello");
        Assert.True(undoCode == 0, undo);
        Assert.Contains("rolled back to revision 2: revision 4 carries its spec to every node at once", undo, StringComparison.Ordinal);
        await Fleet.WaitForBodyAsync(gateway + "/hello", "two from edge-1 (path /)\n", Fleet.Patience);
        Assert.Matches(@"\n4 .* same as revision 2 ", (await fleet.ClientAsync("rollout", "history", "app/hello")).Output);

        (undoCode, undo) = await fleet.ClientAsync("rollout", "undo", "hello", "--to-revision", "1");
        Assert.True(undoCode == 0, undo);
        await Fleet.WaitForBodyAsync(gateway + "/hello", "one from edge-1 (path /)\n", Fleet.Patience);

        // A revision that was never kept is refused, and nothing changes.
        (undoCode, undo) = await fleet.ClientAsync("rollout", "undo", "hello", "--to-revision", "42");
        Assert.Equal(1, undoCode);
        Assert.Contains("has no revision 42", undo, StringComparison.Ordinal);
        var app = await fleet.ApiGetAsync("/apis/outpost.dev/v1/applications/hello");
        Assert.Equal(5, (long)app["metadata"]!["generation"]!);
        var audit = (await fleet.ClientAsync("get", "audit")).Output;
        Assert.Contains("back to revision 1", audit, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ARevisionFailingItsReadinessProbe_NeverServes_TheNodeKeepsThePreviousAndReportsWhy()
    {
        await using var fleet = new Fleet();
        await fleet.StartServerAsync();
        var token = await fleet.CreateJoinTokenAsync();
        var (_, gateway) = await fleet.StartAgentAsync("edge-1", token);
        var (code, output) = await fleet.ClientAsync("apply", "-f", fleet.WriteManifest("hello.yaml", Greeting("one")));
        Assert.True(code == 0, output);
        await Fleet.WaitForBodyAsync(gateway + "/hello", "one from edge-1 (path /)\n", Fleet.Patience);

        // hello answers 200; a probe expecting 204 fails, so generation 2 must never serve.
        (code, output) = await fleet.ClientAsync("apply", "-f", fleet.WriteManifest("hello.yaml", Greeting("two") + """

              readinessProbe:
                path: /hello
                expectStatus: 204
            """));
        Assert.True(code == 0, output);
        // The node refuses it (generation 1 never stops serving) and the server rolls the revision back.
        var rollout = await Eventually.UntilAsync(() => fleet.ApiGetAsync("/apis/outpost.dev/v1/applications/hello/rollout"),
            r => (long?)r["status"]?["revision"] == 2 && (string?)r["status"]?["phase"] == "RolledBack",
            Fleet.Patience, "the rollout of revision 2 to be rolled back", r => r["status"]?.ToJsonString() ?? "");
        var message = (string)rollout["status"]!["message"]!;
        Assert.Contains("GET /hello answered 200 (expected 204)", message, StringComparison.Ordinal);
        Assert.Contains("revision 1 keeps serving", message, StringComparison.Ordinal);
        Assert.DoesNotContain("generation", message, StringComparison.Ordinal); // one word for it, as in rollout status and history
        Assert.Equal("one from edge-1 (path /)\n", (await Fleet.GetAsync(gateway + "/hello")).Body);

        // What happened is on the app as events, for `get events` and kubectl describe.
        var events = await Eventually.UntilAsync(() => fleet.ApiGetAsync("/api/v1/events?fieldSelector=involvedObject.name=hello"),
            e => e["items"]!.AsArray().Any(i => (string?)i!["reason"] == "RolloutRolledBack"), Fleet.Patience, "the RolloutRolledBack event", e => e.ToJsonString());
        var items = events["items"]!.AsArray().Select(i => i!.AsObject()).ToList();
        Assert.Contains(items, i => (string?)i["reason"] == "RolloutStarted" && (string?)i["message"] == "revision 2 from revision 1 (allAtOnce) to 1 node");
        Assert.Contains(items, i => (string?)i["reason"] == "AppFailed" && (string?)i["type"] == "Warning"
            && ((string)i["message"]!).StartsWith("revision 2 failed on node edge-1: readiness probe: GET /hello answered 200 (expected 204)", StringComparison.Ordinal));

        (code, output) = await fleet.ClientAsync("apply", "-f", fleet.WriteManifest("hello.yaml", Greeting("three") + """

              readinessProbe:
                path: /hello
                expectStatus: 200
            """));
        Assert.True(code == 0, output);
        await Fleet.WaitForBodyAsync(gateway + "/hello", "three from edge-1 (path /)\n", Fleet.Patience);
    }
}
