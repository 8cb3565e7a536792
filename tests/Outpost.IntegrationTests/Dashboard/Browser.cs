using Microsoft.Playwright;

namespace Outpost.IntegrationTests.Dashboard;

/// <summary>
/// The system's Chromium (Debian's `chromium`, installed by test.sh in CI), driven by Playwright
/// through its executable path: no browser download. It trusts the fleet's CA the way a user's
/// browser would, through an NSS database of its own, so a page that loads proves the server's
/// certificate checks out; no certificate error is ignored.
/// </summary>
internal sealed class Browser : IAsyncDisposable
{
    private readonly IPlaywright _playwright;
    private readonly IBrowser _browser;
    private readonly string _home;

    private Browser(IPlaywright playwright, IBrowser browser, string home)
    {
        _playwright = playwright;
        _browser = browser;
        _home = home;
    }

    /// <summary>Skips where Chromium or NSS's certutil is missing (test.sh installs both in CI).</summary>
    public static void SkipUnlessAvailable()
    {
        Skip.If(DashboardFixture.ChromiumPath is null, "chromium is not installed (apt-get install chromium)");
        Skip.IfNot(File.Exists("/usr/bin/certutil"), "NSS's certutil is not installed (apt-get install libnss3-tools)");
    }

    /// <summary>Starts Chromium trusting the CA in <paramref name="caPemPath"/> and nothing else of ours.</summary>
    public static async Task<Browser> LaunchAsync(string caPemPath)
    {
        var (home, environment) = await DashboardFixture.TrustingHomeAsync(caPemPath);
        var playwright = await Playwright.CreateAsync();
        var browser = await playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions
        {
            ExecutablePath = DashboardFixture.ChromiumPath,
            Headless = true,
            Env = environment,
            Timeout = (float)Fleet.StartTimeout.TotalMilliseconds,
        });
        return new Browser(playwright, browser, home);
    }

    /// <summary>A fresh tab (its own session storage) at the given size, recording what would betray a fault.</summary>
    public async Task<DashboardPage> OpenAsync(string serverUrl, int width = 1280, int height = 800)
    {
        var context = await _browser.NewContextAsync(new BrowserNewContextOptions
        {
            ViewportSize = new ViewportSize { Width = width, Height = height },
            IgnoreHTTPSErrors = false,
        });
        context.SetDefaultTimeout((float)Fleet.Patience.TotalMilliseconds);
        var page = await context.NewPageAsync();
        var dashboard = new DashboardPage(page, serverUrl);
        await dashboard.OpenAsync();
        return dashboard;
    }

    public async ValueTask DisposeAsync()
    {
        await _browser.DisposeAsync();
        _playwright.Dispose();
        try
        {
            Directory.Delete(_home, recursive: true);
        }
        catch (IOException)
        {
            // Chromium may hold a file for a moment after it exits.
        }
    }
}

/// <summary>One tab on the dashboard, with what went wrong in it: script errors, dialogs (alert() from injected markup), CSP refusals.</summary>
internal sealed class DashboardPage(IPage page, string serverUrl)
{
    private readonly System.Collections.Concurrent.ConcurrentQueue<string> _faults = new();

    public IPage Page { get; } = page;

    /// <summary>Dialogs the page opened: an alert() here means markup from the fleet ran.</summary>
    public System.Collections.Concurrent.ConcurrentQueue<string> Dialogs { get; } = new();

    /// <summary>Bytes each response of the page's own assets took on the wire (headers and body), by URL (filled from Playwright's event threads).</summary>
    public System.Collections.Concurrent.ConcurrentDictionary<string, long> Transferred { get; } = new(StringComparer.Ordinal);

    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, bool> _assetsAsked = new(StringComparer.Ordinal);

    public async Task OpenAsync()
    {
        Page.PageError += (_, error) => _faults.Enqueue("page error: " + error);
        Page.Console += (_, message) =>
        {
            if (message.Type == "error" && !message.Text.Contains("Failed to load resource", StringComparison.Ordinal))
            {
                _faults.Enqueue("console error: " + message.Text);
            }
        };
        // These handlers run on Playwright's event threads, after the test may have closed the page:
        // a call on a closed page throws there, where nothing would catch it and the test host would die.
        Page.Dialog += async (_, dialog) =>
        {
            Dialogs.Enqueue($"{dialog.Type}: {dialog.Message}");
            try
            {
                await dialog.DismissAsync();
            }
            catch (PlaywrightException)
            {
                // The page closed first.
            }
        };
        Page.Request += (_, request) =>
        {
            if (IsAsset(request))
            {
                _assetsAsked[request.Url] = true;
            }
        };
        Page.RequestFailed += (_, request) => _assetsAsked.TryRemove(request.Url, out bool _);
        Page.RequestFinished += async (_, request) =>
        {
            if (IsAsset(request))
            {
                try
                {
                    var sizes = await request.SizesAsync();
                    Transferred[request.Url] = sizes.ResponseBodySize + sizes.ResponseHeadersSize;
                }
                catch (PlaywrightException)
                {
                    // The page closed before its sizes came back: nobody will read them.
                }
            }
        };
        var response = await Page.GotoAsync(serverUrl + "/ui/");
        Assert.NotNull(response);
        Assert.Equal(200, response.Status);
    }

    /// <summary>Waits until every asset the page asked for so far has its size in <see cref="Transferred"/>.</summary>
    public async Task<KeyValuePair<string, long>[]> TransfersAsync()
    {
        await Eventually.UntilAsync(
            () => _assetsAsked.Keys.Where(url => !Transferred.ContainsKey(url)).ToList(), missing => missing.Count == 0, Fleet.Patience,
            "the sizes of every asset the page asked for", missing => string.Join(", ", missing));
        return Transferred.ToArray();
    }

    private static bool IsAsset(IRequest request) => request.Url.Contains("/ui/", StringComparison.Ordinal);

    public async Task SignInAsync(string token)
    {
        await Page.FillAsync("#token", token);
        await Page.ClickAsync("button[type=submit]");
        await Page.WaitForSelectorAsync("#nav:not([hidden])");
    }

    public Task GoAsync(string route) => Page.EvaluateAsync("r => { location.hash = r; }", route);

    /// <summary>Waits until a JavaScript condition holds on the page (no reload: the page changes on its own).</summary>
    /// On timeout it fails with what the page showed.
    public async Task WaitForAsync(string condition, object? arg = null)
    {
        try
        {
            await Page.WaitForFunctionAsync(condition, arg, new PageWaitForFunctionOptions { PollingInterval = 50, Timeout = (float)Fleet.Patience.TotalMilliseconds });
        }
        catch (TimeoutException)
        {
            var shown = await Page.EvaluateAsync<string>("() => location.hash + '\\n' + document.querySelector('main')?.innerText");
            Assert.Fail($"timed out after {Fleet.Patience.TotalSeconds:F0} s waiting for {condition}; the page showed:\n{shown}\n{string.Join('\n', _faults)}");
        }
    }

    /// <summary>Saves a screenshot where OUTPOST_SCREENSHOTS says (docs/images for the docs), else nowhere.</summary>
    public async Task ScreenshotAsync(string name, bool fullPage = false)
    {
        var bytes = await Page.ScreenshotAsync(new PageScreenshotOptions { FullPage = fullPage });
        Assert.NotEmpty(bytes);
        if (Environment.GetEnvironmentVariable("OUTPOST_SCREENSHOTS") is { Length: > 0 } dir)
        {
            Directory.CreateDirectory(dir);
            await File.WriteAllBytesAsync(Path.Combine(dir, $"dashboard-{name}.png"), bytes);
        }
    }

    /// <summary>Fails with every script error, console error and dialog the page had.</summary>
    public void AssertNoFaults()
    {
        Assert.True(_faults.IsEmpty, string.Join('\n', _faults));
        Assert.True(Dialogs.IsEmpty, "the page opened dialogs: " + string.Join('\n', Dialogs));
    }
}
