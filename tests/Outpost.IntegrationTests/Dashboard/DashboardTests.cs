using System.Diagnostics;
using System.Net;
using Xunit.Abstractions;

namespace Outpost.IntegrationTests.Dashboard;

/// <summary>
/// The web dashboard in real Chromium against a real server and real agents: signing in, the
/// fleet changing on screen as nodes die, a canary advancing and undone from the page, a
/// viewer's page with no button that changes anything, fleet text that stays text, the
/// server's own CA trusted as a user would trust it, and a 10,000-node fleet that stays fast.
/// </summary>
public sealed class DashboardTests(ITestOutputHelper output)
{
    private const string RolloutPath = "/apis/outpost.dev/v1/applications/hello/rollout";

    /// <summary>A label no join would accept (node labels are validated), written into the store directly.</summary>
    private const string Hostile = "<img src=x onerror=alert(1)>";

    /// <summary>The hello app on the agents (tier=edge), not on nodes seeded into the store, which never come.</summary>
    private static string App(string greeting, string spec = "") => Fleet.HelloApp + $"""

          env:
            GREETING: {greeting}
          placement:
            nodeSelector:
              tier: edge
        """ + (spec.Length > 0 ? "\n" + spec : "");

    /// <summary>A canary whose first step holds for an hour: the page shows it mid-way for as long as the test needs.</summary>
    private const string Canary = """
          rollout:
            strategy: canary
            steps:
            - percent: 50
              pause: 1h
        """;

    private static async Task ApplyAsync(Fleet fleet, string yaml)
    {
        var (code, text) = await fleet.ClientAsync("apply", "-f", fleet.WriteManifest("hello.yaml", yaml));
        Assert.True(code == 0, text + fleet.ServerErrors());
    }

    private static async Task<string> AdminTokenAsync(Fleet fleet) =>
        Core.Api.ClientConfig.Parse(await File.ReadAllTextAsync(fleet.ConfigPath), fleet.ConfigPath).Token;

    private static string CaPath(Fleet fleet) => Path.Combine(fleet.Root, "server", "tls", "ca.crt");

    [SkippableFact]
    public async Task Admin_SeesTheFleetLive_WatchesACanaryAdvance_PausesAndUndoesIt_AndNodesDieOnScreen()
    {
        Browser.SkipUnlessAvailable();
        await using var fleet = new Fleet();
        await DashboardFixture.SeedNodesAsync(Path.Combine(fleet.Root, "server"), [("lab-1", new() { ["site"] = "lab", ["note"] = Hostile })]);
        await fleet.StartServerAsync(0, Fleet.ShortLease);
        var token = await fleet.CreateJoinTokenAsync();
        var agents = await Task.WhenAll(
            fleet.StartAgentAsync("edge-1", token, "site=north,tier=edge", extra: Fleet.FastHeartbeat),
            fleet.StartAgentAsync("edge-2", token, "site=south,tier=edge", extra: Fleet.FastHeartbeat));
        await ApplyAsync(fleet, App("one"));
        await Task.WhenAll(agents.Select((a, i) => Fleet.WaitForBodyAsync(a.Gateway + "/hello", $"one from edge-{i + 1} (path /)\n")));

        await using var browser = await Browser.LaunchAsync(CaPath(fleet));
        var ui = await browser.OpenAsync(fleet.ServerUrl);
        await ui.SignInAsync(await AdminTokenAsync(fleet));
        Assert.Equal("admin", await ui.Page.InnerTextAsync(".role"));

        // The fleet: both agents Ready, the seeded node Offline, the hostile label shown as the text it is.
        await ui.WaitForAsync("() => document.querySelector('[data-node=\"edge-1\"][data-state=\"Ready\"]') && document.querySelector('[data-node=\"edge-2\"][data-state=\"Ready\"]')");
        await ui.WaitForAsync("() => document.querySelector('[data-node=\"lab-1\"][data-state=\"Offline\"]')");
        Assert.Equal("2", await ui.Page.InnerTextAsync("button[data-state=Ready] .n"));
        Assert.Equal("1", await ui.Page.InnerTextAsync("button[data-state=Offline] .n"));
        var chips = await ui.Page.Locator("[data-node=\"lab-1\"] .chip").AllInnerTextsAsync();
        Assert.Contains("note=" + Hostile, chips);
        Assert.Equal(0, await ui.Page.Locator("img[src=x]").CountAsync());
        await ui.ScreenshotAsync("fleet");

        // Keyboard: "/" reaches the filter; a label term narrows the list at once; arrows walk the rows.
        await ui.Page.Keyboard.PressAsync("/");
        Assert.Equal("node-filter", await ui.Page.EvaluateAsync<string>("() => document.activeElement.id"));
        await ui.Page.Keyboard.TypeAsync("site=north");
        await ui.WaitForAsync("() => document.querySelectorAll('.vrow[data-node]').length === 1");
        Assert.Equal("1 of 3 nodes", await ui.Page.InnerTextAsync("#node-summary"));
        await ui.Page.FillAsync("#node-filter", "");
        await ui.WaitForAsync("() => document.querySelectorAll('.vrow[data-node]').length === 3");
        await ui.Page.FocusAsync("[data-node=\"edge-1\"] a");
        await ui.Page.Keyboard.PressAsync("ArrowDown");
        Assert.Equal("edge-2", await ui.Page.EvaluateAsync<string>("() => document.activeElement.textContent"));
        await ui.Page.Keyboard.PressAsync("Enter");
        await ui.WaitForAsync("() => location.hash === '#/nodes/edge-2' && document.querySelector('#node-apps td a')?.textContent === 'hello'");
        await ui.WaitForAsync("() => document.querySelector('.tail li.log')");
        await ui.ScreenshotAsync("node", fullPage: true);

        // The canary: the page is open before the apply and follows it without a reload.
        await ui.GoAsync("#/apps/hello");
        await ui.WaitForAsync("() => document.querySelector('#rollout-phase')?.textContent === 'Succeeded'");
        Assert.Equal(0, await ui.Page.Locator("[data-action=undo]").CountAsync()); // nothing earlier to go back to
        await ApplyAsync(fleet, App("two", Canary));
        await ui.WaitForAsync("""
            () => document.querySelector('#rollout-phase')?.textContent === 'Progressing'
              && document.querySelector('#rollout-steps li[aria-current=step]')?.textContent.startsWith('Step 1')
              && [...document.querySelectorAll('#rollout-nodes tbody tr')].filter(r => r.cells[3].textContent === '2').length === 1
              && document.querySelector('#rollout-message')?.textContent.includes('pausing')
            """);
        await ui.ScreenshotAsync("rollout", fullPage: true);

        // Pause and resume from the page, as the admin it is.
        await ui.Page.ClickAsync("[data-action=pause]");
        await ui.WaitForAsync("() => document.querySelector('#rollout-phase')?.textContent === 'Paused'");
        Assert.Equal("Paused", (string?)(await fleet.ApiGetAsync(RolloutPath))["status"]!["phase"]);
        await ui.Page.ClickAsync("[data-action=resume]");
        await ui.WaitForAsync("() => document.querySelector('#rollout-phase')?.textContent === 'Progressing'");

        // Undo: asked once more, then every node goes back to revision 1 at once (as revision 3).
        await ui.Page.ClickAsync("[data-action=undo]");
        await ui.Page.ClickAsync("[data-action=confirm-undo]");
        await ui.WaitForAsync("""
            () => document.querySelector('#rollout-phase')?.textContent === 'Succeeded'
              && [...document.querySelectorAll('#rollout-nodes tbody tr')].every(r => r.cells[3].textContent === '3')
            """);
        Assert.Contains("Undone: revision 1 again, as revision 3", await ui.Page.InnerTextAsync(".note"), StringComparison.Ordinal);
        var rollout = await fleet.ApiGetAsync(RolloutPath);
        Assert.Equal(3, (long)rollout["status"]!["revision"]!);
        Assert.Equal("undo", (string?)rollout["status"]!["strategy"]);
        await Task.WhenAll(agents.Select((a, i) => Fleet.WaitForBodyAsync(a.Gateway + "/hello", $"one from edge-{i + 1} (path /)\n")));

        // A node dies: NotReady, then Offline once its lease runs out, on the open page.
        var (code, text) = await fleet.ClientAsync("apply", "-f", fleet.WriteManifest("alert.yaml", """
            apiVersion: outpost.dev/v1
            kind: AlertRule
            metadata:
              name: edge-offline
            spec:
              condition:
                type: nodeOffline
                nodeSelector: {tier: edge}
              severity: critical
            """));
        Assert.True(code == 0, text);
        await ui.GoAsync("#/fleet");
        await ui.WaitForAsync("() => document.querySelector('[data-node=\"edge-2\"][data-state=\"Ready\"]')");
        await ui.Page.EvaluateAsync("""
            () => {
              window.seen = {};
              new MutationObserver(() => {
                const state = document.querySelector('[data-node="edge-2"]')?.dataset.state;
                if (state && !window.seen[state]) window.seen[state] = Date.now();
              }).observe(document.querySelector('#node-list'), { subtree: true, childList: true, attributes: true });
            }
            """);
        agents[1].Process.Kill();
        // When the server first says so (its API, asked every 20 ms), against when the page showed it.
        var recorded = ("Ready", 0L);
        var deadline = Stopwatch.StartNew();
        while (recorded.Item1 == "Ready")
        {
            Assert.True(deadline.Elapsed < Fleet.Patience, "the server never saw edge-2 go");
            await Task.Delay(20);
            recorded = (await fleet.NodeStateAsync("edge-2") ?? "", DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());
        }

        await ui.WaitForAsync("() => document.querySelector('[data-node=\"edge-2\"][data-state=\"NotReady\"], [data-node=\"edge-2\"][data-state=\"Offline\"]')");
        await ui.WaitForAsync("() => document.querySelector('[data-node=\"edge-2\"][data-state=\"Offline\"]')");
        var shown = await ui.Page.EvaluateAsync<Dictionary<string, double>>("() => window.seen");
        var firstShown = shown.TryGetValue("NotReady", out var notReady) ? notReady : shown["Offline"];
        output.WriteLine($"edge-2 {recorded.Item1} in the API at {recorded.Item2}, on the page {firstShown - recorded.Item2} ms later (states seen: {string.Join(", ", shown.Select(s => s.Key))})");
        Assert.Equal("2", await ui.Page.InnerTextAsync("button[data-state=Offline] .n"));
        await ui.ScreenshotAsync("fleet-offline");

        // The alert the rule raised, with its rule, target and since.
        await ui.GoAsync("#/alerts");
        await ui.WaitForAsync("() => [...document.querySelectorAll('#alerts tbody tr')].some(r => r.cells[0].textContent === 'Firing' && r.cells[2].textContent === 'edge-offline' && r.cells[3].textContent.includes('edge-2'))");
        await ui.ScreenshotAsync("alerts");

        // At phone width: the same pages, nothing wider than the screen.
        await ui.Page.SetViewportSizeAsync(390, 844);
        await ui.GoAsync("#/fleet");
        await ui.WaitForAsync("() => document.querySelector('[data-node=\"edge-1\"]') && document.documentElement.scrollWidth <= window.innerWidth");
        await ui.ScreenshotAsync("phone");
        await ui.GoAsync("#/apps/hello");
        await ui.WaitForAsync("() => document.querySelector('#rollout-phase') && document.documentElement.scrollWidth <= window.innerWidth");
        ui.AssertNoFaults();
    }

    /// <summary>Also run against the release binary (Category=aot): the pages are resources inside the one native file.</summary>
    [SkippableFact]
    [Trait("Category", "aot")]
    public async Task Viewer_SeesTheSamePages_WithNoButtonThatChangesAnything()
    {
        Browser.SkipUnlessAvailable();
        await using var fleet = new Fleet();
        await fleet.StartServerAsync();
        var agent = await fleet.StartAgentAsync("edge-1", await fleet.CreateJoinTokenAsync(), "tier=edge");
        await ApplyAsync(fleet, App("one"));
        await Fleet.WaitForBodyAsync(agent.Gateway + "/hello", "one from edge-1 (path /)\n");
        await ApplyAsync(fleet, App("two"));
        await Fleet.WaitForBodyAsync(agent.Gateway + "/hello", "two from edge-1 (path /)\n");
        // The sensor sample publishes a reading to the "readings" topic every 5 s.
        var (applied, applyOutput) = await fleet.ClientAsync("apply", "-f", Path.Combine(Repository.Root, "samples", "manifests", "sensor.yaml"));
        Assert.True(applied == 0, applyOutput);
        var (code, viewer) = await fleet.ClientAsync("token", "create", "--api", "--role", "viewer", "--description", "dashboard viewer");
        Assert.True(code == 0, viewer);

        await using var browser = await Browser.LaunchAsync(CaPath(fleet));
        var ui = await browser.OpenAsync(fleet.ServerUrl);
        // A wrong token is refused with a reason, and nothing is kept.
        await ui.Page.FillAsync("#token", "opa_000000000000_00000000000000000000000000000000");
        await ui.Page.ClickAsync("button[type=submit]");
        await ui.WaitForAsync("() => document.querySelector('.error:not([hidden])')?.textContent.includes('unknown, revoked or expired')");
        Assert.Null(await ui.Page.EvaluateAsync<string?>("() => sessionStorage.getItem('outpost.token')"));

        await ui.SignInAsync(viewer.Trim());
        Assert.Equal("viewer", await ui.Page.InnerTextAsync(".role"));
        await ui.WaitForAsync("() => document.querySelector('[data-node=\"edge-1\"][data-state=\"Ready\"]')");
        // The token never appears in a URL the page asked for or shows.
        Assert.DoesNotContain(viewer.Trim(), ui.Page.Url, StringComparison.Ordinal);

        await ui.GoAsync("#/apps/hello");
        // Revision 2 is current and revision 1 is there to go back to: an admin would see Undo here.
        await ui.WaitForAsync("() => document.querySelector('#rollout-phase')?.textContent === 'Succeeded' && document.querySelectorAll('#revisions tbody tr').length === 2");
        Assert.Equal(0, await ui.Page.Locator("[data-action]").CountAsync());
        Assert.Equal(0, await ui.Page.Locator("#rollout-actions button").CountAsync());
        // Data: the topic with its record count, and its records followed live.
        await ui.GoAsync("#/data");
        await ui.WaitForAsync("() => [...document.querySelectorAll('#topics tbody tr')].some(r => r.cells[0].textContent === 'readings' && Number(r.cells[1].textContent) >= 1)");
        await ui.Page.ClickAsync("#topics a");
        await ui.WaitForAsync("() => location.hash === '#/data/topics/readings' && document.querySelector('.tail li.record .msg')?.textContent.includes('\"seq\"')");
        var first = await ui.Page.Locator(".tail li.record").CountAsync();
        await ui.WaitForAsync("n => document.querySelectorAll('.tail li.record').length > n", first);

        foreach (var route in new[] { "#/fleet", "#/nodes/edge-1", "#/alerts", "#/events", "#/data", "#/services" })
        {
            await ui.GoAsync(route);
            await ui.WaitForAsync("() => !document.querySelector('main')?.textContent.includes('Loading…')");
            Assert.Equal(0, await ui.Page.Locator("main [data-action], main button.danger").CountAsync());
        }

        // And the API behind the page refuses the viewer's token a change anyway.
        using var undo = new HttpRequestMessage(HttpMethod.Post, fleet.ServerUrl + "/apis/outpost.dev/v1/applications/hello/rollback");
        undo.Headers.Authorization = new("Bearer", viewer.Trim());
        using var refused = await fleet.ApiSendAsync(undo, authenticate: false);
        Assert.Equal(HttpStatusCode.Forbidden, refused.StatusCode);
        ui.AssertNoFaults();
    }

    [SkippableFact]
    public async Task TenThousandNodes_PaintAndFilterFast_AndTheColdLoadIsSmall()
    {
        Browser.SkipUnlessAvailable();
        await using var fleet = new Fleet();
        await DashboardFixture.SeedFleetAsync(Path.Combine(fleet.Root, "server"), 10_000);
        await fleet.StartServerAsync();

        await using var browser = await Browser.LaunchAsync(CaPath(fleet));
        var ui = await browser.OpenAsync(fleet.ServerUrl);
        await ui.SignInAsync(await AdminTokenAsync(fleet));
        await ui.WaitForAsync("() => document.querySelector('#node-summary')?.textContent === '10000 nodes'");
        var files = await ui.TransfersAsync();
        Assert.Contains(files, f => f.Key.EndsWith("/app.js", StringComparison.Ordinal));
        var cold = files.Sum(f => f.Value);
        output.WriteLine($"cold load: {cold} bytes over {files.Length} files ({string.Join(", ", files.Select(t => $"{t.Key[(t.Key.IndexOf("/ui/", StringComparison.Ordinal) + 4)..]}={t.Value}"))})");

        // First meaningful paint: from a fresh navigation to the fleet's rows on screen.
        var paints = new List<double>();
        for (var run = 0; run < 3; run++)
        {
            await ui.Page.ReloadAsync();
            await ui.WaitForAsync("() => document.querySelector('#node-summary')?.textContent === '10000 nodes' && document.querySelector('.vrow[data-node]')");
            paints.Add(await ui.Page.EvaluateAsync<double>(DashboardFixture.FirstPaint));
        }

        // Filtering: each keystroke's handling, from the input event to the rows drawn.
        var keystrokes = await ui.Page.EvaluateAsync<double[]>(DashboardFixture.TimeKeystrokes, new[]
        {
            "s", "si", "sit", "site", "site=", "site=n", "site=no", "site=nor", "node-0", "node-01", "node-012", "tier=gpu", "rack=r7 tier=cpu",
        });
        var expected = Enumerable.Range(0, 10_000).Count(i => i % 40 == 7 && i % 3 != 0);
        Assert.Equal($"{expected} of 10000 nodes", await ui.Page.InnerTextAsync("#node-summary"));
        paints.Sort();
        var keys = keystrokes.Order().ToArray();
        output.WriteLine($"fleet page with 10,000 nodes: first paint median {paints[1]:F0} ms (runs: {string.Join(", ", paints.Select(p => p.ToString("F0")))}); " +
            $"filter keystroke median {keys[keys.Length / 2]:F1} ms, max {keys[^1]:F1} ms; cold load {cold} bytes");
        // The targets are 1.5 s and 100 ms on a quiet machine (bench/run.sh dashboard measures them);
        // here, on a shared and loaded one, only a page that freezes fails.
        Assert.True(paints[1] < 10_000, $"first paint took {paints[1]:F0} ms");
        Assert.True(keys[keys.Length / 2] < 1_000, $"a keystroke took {keys[keys.Length / 2]:F0} ms");
        Assert.True(cold <= 500 * 1024, $"a cold load moved {cold} bytes of assets");
        ui.AssertNoFaults();
    }
}
