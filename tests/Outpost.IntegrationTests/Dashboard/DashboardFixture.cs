using System.Diagnostics;
using Outpost.Core.Store;
using Outpost.Server.Store;

namespace Outpost.IntegrationTests.Dashboard;

/// <summary>
/// What the dashboard's browser tests and bench/run.sh dashboard share: Chromium trusting a
/// fleet's CA, the scripts that time the fleet page, and a large fleet seeded into a store.
/// </summary>
internal static class DashboardFixture
{
    private static readonly string[] ChromiumPaths = ["/usr/bin/chromium", "/usr/bin/chromium-browser"];

    public static string? ChromiumPath =>
        Environment.GetEnvironmentVariable("OUTPOST_CHROMIUM") is { Length: > 0 } path ? path : ChromiumPaths.FirstOrDefault(File.Exists);

    /// <summary>
    /// A HOME of its own for Chromium whose NSS database trusts the CA in <paramref name="caPemPath"/>
    /// (what a user does once with certutil), and the environment to start the browser with.
    /// </summary>
    public static async Task<(string Home, Dictionary<string, string> Environment)> TrustingHomeAsync(string caPemPath)
    {
        var home = Directory.CreateTempSubdirectory("outpost-chromium-").FullName;
        var nss = Path.Combine(home, ".pki", "nssdb");
        Directory.CreateDirectory(nss);
        await CertutilAsync("-N", "-d", "sql:" + nss, "--empty-password");
        await CertutilAsync("-A", "-d", "sql:" + nss, "-n", "Outpost fleet CA", "-t", "C,,", "-i", caPemPath);
        var environment = Environment.GetEnvironmentVariables().Cast<System.Collections.DictionaryEntry>()
            .ToDictionary(e => (string)e.Key, e => (string?)e.Value ?? "", StringComparer.Ordinal);
        environment["HOME"] = home;
        return (home, environment);
    }

    private static async Task CertutilAsync(params string[] args)
    {
        using var process = Process.Start(new ProcessStartInfo("certutil", args) { RedirectStandardOutput = true, RedirectStandardError = true })!;
        var output = await process.StandardOutput.ReadToEndAsync() + await process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"certutil {string.Join(' ', args)}: {output}");
        }
    }

    /// <summary>When the fleet page first drew its rows with the list in, ms after navigation start.</summary>
    public const string FirstPaint = "() => performance.getEntriesByName('outpost:fleet-painted')[0].startTime";

    /// <summary>Types each text into the filter, one at a time; each keystroke's handling in ms, input event to rows drawn.</summary>
    public const string TimeKeystrokes = """
        async texts => {
          const input = document.getElementById('node-filter');
          const times = [];
          for (const text of texts) {
            const start = performance.now();
            input.value = text;
            input.dispatchEvent(new Event('input'));
            times.push(performance.now() - start);
            await new Promise(r => requestAnimationFrame(() => setTimeout(r)));
          }
          return times;
        }
        """;

    /// <summary>The site labels of <see cref="SeedFleetAsync"/>'s nodes, node i having site i % 5.</summary>
    public static readonly string[] Sites = ["north", "south", "east", "west", "lab"];

    /// <summary>
    /// <paramref name="count"/> nodes named node-00000 on, labelled site (<see cref="Sites"/>),
    /// rack (r0 to r39) and tier (gpu for every third, else cpu), written into the store of a
    /// server data dir before the server starts: a fleet larger than this machine could run as agents.
    /// </summary>
    public static Task SeedFleetAsync(string serverDataDir, int count) =>
        SeedNodesAsync(serverDataDir, Enumerable.Range(0, count).Select(i => ($"node-{i:D5}", new Dictionary<string, string>
        {
            ["site"] = Sites[i % Sites.Length],
            ["rack"] = $"r{i % 40}",
            ["tier"] = i % 3 == 0 ? "gpu" : "cpu",
        })));

    /// <summary>Nodes written straight into a server's SQLite store before it starts, labels no join would let through included.</summary>
    public static async Task SeedNodesAsync(string serverDataDir, IEnumerable<(string Name, Dictionary<string, string> Labels)> nodes)
    {
        Directory.CreateDirectory(serverDataDir);
        await using var store = new SqliteControlPlaneStore(Path.Combine(serverDataDir, "outpost.db"));
        await store.InitializeAsync(CancellationToken.None);
        foreach (var chunk in nodes.Chunk(500))
        {
            await store.WriteAsync([.. chunk.Select(n => new ResourceWrite { Op = WriteOp.Upsert, Kind = "Node", Name = n.Name, Labels = n.Labels })], CancellationToken.None);
        }
    }
}
