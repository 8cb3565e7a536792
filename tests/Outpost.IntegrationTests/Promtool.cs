using System.Diagnostics;

namespace Outpost.IntegrationTests;

/// <summary>
/// Prometheus's own checker (`promtool check metrics`, Debian package prometheus). In CI the
/// test script installs it and its absence fails the test; elsewhere the test skips, loudly.
/// </summary>
internal static class Promtool
{
    private static string? Path => new[] { "/usr/bin/promtool", "/usr/local/bin/promtool" }.FirstOrDefault(File.Exists);

    public static void SkipUnlessInstalled()
    {
        if (Path is not null)
        {
            return;
        }

        Assert.False(Environment.GetEnvironmentVariable("CI") == "true", "promtool is missing in CI: test.sh installs the prometheus package");
        Skip.If(true, "SKIPPED LOUDLY: promtool is not installed (apt-get install prometheus); cannot check the /metrics output");
    }

    /// <summary>Runs `promtool check metrics` on the text; returns its exit code and everything it said.</summary>
    public static async Task<(int ExitCode, string Output)> CheckAsync(string metrics)
    {
        using var process = Process.Start(new ProcessStartInfo(Path!, ["check", "metrics"])
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        })!;
        await process.StandardInput.WriteAsync(metrics);
        process.StandardInput.Close();
        return await Tool.CompleteAsync(process, "promtool check metrics");
    }
}
