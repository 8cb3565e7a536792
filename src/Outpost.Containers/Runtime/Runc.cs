using System.Diagnostics;

namespace Outpost.Containers.Runtime;

/// <summary>The runc command line, with a state directory of its own per agent (container ids are unique within it).</summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class Runc
{
    /// <param name="stateDirectory">runc's <c>--root</c>: where it keeps its containers' state.</param>
    /// <param name="executable">Default: <c>runc</c> on PATH.</param>
    public Runc(string stateDirectory, string? executable = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(stateDirectory);
        StateDirectory = Path.GetFullPath(stateDirectory);
        Executable = executable ?? Find() ?? "runc";
    }

    public string StateDirectory { get; }

    public string Executable { get; }

    /// <summary>Why containers cannot run on this node, or null if they can (runc found, running as root).</summary>
    public string? Unavailable()
    {
        if (!File.Exists(Executable))
        {
            return "runc is not installed on this node (apt-get install runc)";
        }

        if (!Environment.IsPrivilegedProcess)
        {
            return "containers need the agent to run as root";
        }

        return null;
    }

    /// <summary>Starts <c>runc run</c> in the foreground: it lives as long as the container, and exits with its status.</summary>
    public Process Run(string id, string bundle)
    {
        var start = Start(["run", "--bundle", bundle, "--no-new-keyring", id]);
        start.RedirectStandardInput = true;
        var process = Process.Start(start) ?? throw new InvalidOperationException("could not start runc");
        process.StandardInput.Close();
        return process;
    }

    /// <summary>Sends a signal to the container's init process; false if the container is gone.</summary>
    public async Task<bool> KillAsync(string id, string signal, CancellationToken cancellationToken = default) =>
        (await RunAsync(["kill", id, signal], cancellationToken).ConfigureAwait(false)).ExitCode == 0;

    /// <summary>Removes a container whatever its state; nothing if it is not there.</summary>
    public Task DeleteAsync(string id, CancellationToken cancellationToken = default) => RunAsync(["delete", "--force", id], cancellationToken);

    /// <summary>The ids of the containers in this state directory.</summary>
    public async Task<IReadOnlyList<string>> ListAsync(CancellationToken cancellationToken = default)
    {
        if (!Directory.Exists(StateDirectory))
        {
            return [];
        }

        var (code, output, error) = await RunAsync(["list", "--quiet"], cancellationToken).ConfigureAwait(false);
        return code == 0 ? output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            : throw new InvalidOperationException($"runc list failed: {error.Trim()}");
    }

    /// <summary>Runs <paramref name="command"/> inside a running container: its output and exit code.</summary>
    public Task<(int ExitCode, string Output, string Error)> ExecAsync(string id, IReadOnlyList<string> command, CancellationToken cancellationToken = default) =>
        RunAsync(["exec", id, .. command], cancellationToken);

    private async Task<(int ExitCode, string Output, string Error)> RunAsync(string[] args, CancellationToken cancellationToken)
    {
        var start = Start(args);
        start.RedirectStandardInput = true;
        using var process = Process.Start(start) ?? throw new InvalidOperationException("could not start runc");
        process.StandardInput.Close();
        var output = process.StandardOutput.ReadToEndAsync(cancellationToken);
        var error = process.StandardError.ReadToEndAsync(cancellationToken);
        try
        {
            await process.WaitForExitAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw;
        }

        return (process.ExitCode, await output.ConfigureAwait(false), await error.ConfigureAwait(false));
    }

    private ProcessStartInfo Start(string[] args)
    {
        var start = new ProcessStartInfo(Executable)
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        start.ArgumentList.Add("--root");
        start.ArgumentList.Add(StateDirectory);
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }

        return start;
    }

    private static string? Find() =>
        (Environment.GetEnvironmentVariable("PATH") ?? "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
            .Split(':', StringSplitOptions.RemoveEmptyEntries)
            .Select(dir => Path.Combine(dir, "runc"))
            .FirstOrDefault(File.Exists);
}
