using System.Diagnostics;
using System.Globalization;
using Microsoft.Playwright;
using Outpost.IntegrationTests.Dashboard;

namespace Outpost.Bench;

/// <summary>
/// The dashboard in the system's Chromium against a server holding a large fleet: first paint
/// of the fleet page, each filter keystroke, how long after the server has a node's state
/// change the page shows it, and the bytes of a cold load.
/// </summary>
internal static class DashboardBench
{
    /// <summary>What is typed into the filter, a keystroke at a time, on each run.</summary>
    private static readonly string[] Typed =
        ["s", "si", "sit", "site", "site=", "site=n", "site=no", "site=nor", "site=north", "site=north t", "site=north tier=gpu", "node-0", "node-01", "node-012", ""];

    public static async Task<int> RunAsync(string serverUrl, string token, string caPath, int serverPid, int agentPid, string agentNode, int runs)
    {
        // The server's CPU with no page open, to set against the same with the fleet page open (its watch).
        var window = TimeSpan.FromSeconds(10);
        var serverIdle = await CpuShareAsync(serverPid, window);
        var (home, environment) = await DashboardFixture.TrustingHomeAsync(caPath);
        try
        {
            using var playwright = await Playwright.CreateAsync();
            await using var browser = await playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions
            {
                ExecutablePath = DashboardFixture.ChromiumPath ?? "/usr/bin/chromium",
                Headless = true,
                Env = environment,
            });
            var context = await browser.NewContextAsync(new BrowserNewContextOptions { ViewportSize = new ViewportSize { Width = 1280, Height = 800 } });
            context.SetDefaultTimeout(120_000);
            var page = await context.NewPageAsync();
            long cold = 0;
            page.RequestFinished += async (_, request) =>
            {
                if (request.Url.Contains("/ui/", StringComparison.Ordinal))
                {
                    try
                    {
                        var sizes = await request.SizesAsync();
                        Interlocked.Add(ref cold, sizes.ResponseBodySize + sizes.ResponseHeadersSize);
                    }
                    catch (PlaywrightException)
                    {
                        // The page closed first (an event handler's exception would end the process).
                    }
                }
            };
            await page.GotoAsync(serverUrl + "/ui/");
            await page.FillAsync("#token", token);
            await page.ClickAsync("button[type=submit]");
            const string Listed = "() => /^\\d+ nodes$/.test(document.querySelector('#node-summary')?.textContent ?? '') && document.querySelector('.vrow[data-node]')";
            await page.WaitForFunctionAsync(Listed);
            var total = await page.InnerTextAsync("#node-summary");
            var serverWatched = await CpuShareAsync(serverPid, window);

            // First meaningful paint: navigation start to the first rows drawn with the whole list in.
            var paints = new List<double>();
            for (var run = 0; run < runs; run++)
            {
                await page.ReloadAsync();
                await page.WaitForFunctionAsync(Listed);
                paints.Add(await page.EvaluateAsync<double>(DashboardFixture.FirstPaint));
            }

            var keystrokes = new List<double>();
            for (var run = 0; run < runs; run++)
            {
                keystrokes.AddRange(await page.EvaluateAsync<double[]>(DashboardFixture.TimeKeystrokes, Typed));
            }

            // A real agent dies: when the server's API first says so (asked every 20 ms) against when the page shows it.
            await page.WaitForFunctionAsync($"() => document.querySelector('[data-node=\"{agentNode}\"][data-state=\"Ready\"]')");
            await page.EvaluateAsync($$"""
                () => {
                  window.seenAt = 0;
                  new MutationObserver(() => {
                    const state = document.querySelector('[data-node="{{agentNode}}"]')?.dataset.state;
                    if (state && state !== 'Ready' && !window.seenAt) window.seenAt = Date.now();
                  }).observe(document.querySelector('#node-list'), { subtree: true, childList: true, attributes: true });
                }
                """);
            using var http = new HttpClient(new SocketsHttpHandler
            {
                SslOptions = new System.Net.Security.SslClientAuthenticationOptions
                {
                    RemoteCertificateValidationCallback = Core.Security.TrustBundle.FromPem(await File.ReadAllTextAsync(caPath)).ServerValidator(),
                },
            });
            http.DefaultRequestHeaders.Authorization = new("Bearer", token);
            Process.GetProcessById(agentPid).Kill();
            long recorded;
            while (true)
            {
                var node = System.Text.Json.Nodes.JsonNode.Parse(await http.GetStringAsync($"{serverUrl}/api/v1/nodes/{agentNode}"))!;
                if ((string?)node["status"]?["state"] != "Ready")
                {
                    recorded = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
                    break;
                }

                await Task.Delay(20);
            }

            await page.WaitForFunctionAsync("() => window.seenAt > 0");
            var shown = await page.EvaluateAsync<double>("() => window.seenAt");
            paints.Sort();
            keystrokes.Sort();
            Console.Error.WriteLine($"{total}; first paint runs (ms): {string.Join(", ", paints.Select(p => p.ToString("F0", CultureInfo.InvariantCulture)))}");
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"dashboard paint_ms={paints[paints.Count / 2]:F0} keystroke_ms={keystrokes[keystrokes.Count / 2]:F1} keystroke_p99_ms={keystrokes[(int)(keystrokes.Count * 0.99)]:F1} keystroke_max_ms={keystrokes[^1]:F1} state_change_ms={shown - recorded:F0} cold_bytes={cold} server_cpu_idle={serverIdle:F3} server_cpu_watched={serverWatched:F3}"));
            return 0;
        }
        finally
        {
            Directory.Delete(home, recursive: true);
        }
    }

    /// <summary>The share of one core a process used over a window (utime + stime from /proc, 100 ticks a second).</summary>
    private static async Task<double> CpuShareAsync(int pid, TimeSpan window)
    {
        static long Ticks(int pid)
        {
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
            return long.Parse(fields[11], CultureInfo.InvariantCulture) + long.Parse(fields[12], CultureInfo.InvariantCulture);
        }

        var before = Ticks(pid);
        var clock = Stopwatch.StartNew();
        await Task.Delay(window);
        return (Ticks(pid) - before) / 100.0 / clock.Elapsed.TotalSeconds;
    }

}
