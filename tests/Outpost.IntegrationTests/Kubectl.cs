using System.Diagnostics;

namespace Outpost.IntegrationTests;

/// <summary>
/// The real kubectl (/usr/bin/kubectl, v1.32) against a fleet's server, with the kubeconfig
/// the server writes and a cache dir of its own (no discovery cached between tests).
/// </summary>
internal sealed class Kubectl(Fleet fleet) : IDisposable
{
    private const string Path = "/usr/bin/kubectl";
    private readonly string _cache = Directory.CreateTempSubdirectory("outpost-kubectl-").FullName;

    public static void SkipUnlessInstalled()
    {
        if (File.Exists(Path))
        {
            return;
        }

        Assert.False(Environment.GetEnvironmentVariable("CI") == "true", "kubectl is missing in CI");
        Skip.If(true, "SKIPPED LOUDLY: /usr/bin/kubectl is not installed; cannot check kubectl against Outpost");
    }

    /// <summary>Runs kubectl; returns its exit code and everything it printed.</summary>
    public async Task<(int ExitCode, string Output)> RunAsync(params string[] args)
    {
        var info = new ProcessStartInfo(Path, ["--cache-dir", _cache, "--request-timeout", "60s", .. args])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        info.Environment["KUBECONFIG"] = fleet.KubeconfigPath;
        info.Environment["HOME"] = _cache;
        using var process = Process.Start(info)!;
        return await Tool.CompleteAsync(process, $"kubectl {string.Join(' ', args)}");
    }

    /// <summary>Starts a kubectl that keeps running (a watch); its output lines are collected as they come.</summary>
    public (Process Process, System.Collections.Concurrent.ConcurrentQueue<string> Lines) Start(params string[] args)
    {
        var info = new ProcessStartInfo(Path, ["--cache-dir", _cache, .. args]) { RedirectStandardOutput = true, RedirectStandardError = true };
        info.Environment["KUBECONFIG"] = fleet.KubeconfigPath;
        info.Environment["HOME"] = _cache;
        var process = Process.Start(info)!;
        var lines = new System.Collections.Concurrent.ConcurrentQueue<string>();
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) { lines.Enqueue(e.Data); } };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) { lines.Enqueue("stderr: " + e.Data); } };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return (process, lines);
    }

    public void Dispose() => Directory.Delete(_cache, recursive: true);
}
