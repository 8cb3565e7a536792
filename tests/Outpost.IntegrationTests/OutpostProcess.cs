using System.Diagnostics;
using System.Text;
using System.Threading.Channels;

namespace Outpost.IntegrationTests;

/// <summary>A real `outpost` process (server, agent or client), with its output captured line by line.</summary>
public sealed class OutpostProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly Channel<string> _lines = Channel.CreateUnbounded<string>();
    private readonly StringBuilder _all = new();
    private readonly Lock _lock = new();

    private OutpostProcess(Process process) => _process = process;

    /// <summary>How long a client command may take before it counts as hung.</summary>
    public static readonly TimeSpan ClientTimeout = TimeSpan.FromMinutes(3);

    public static string OutpostDll => Path.Combine(AppContext.BaseDirectory, "outpost.dll");

    /// <summary>
    /// The release binary under test when OUTPOST_BINARY names one (./build.sh's
    /// dist/linux-x64/outpost: `./test.sh --aot`, and CI); otherwise the JIT build beside the tests.
    /// </summary>
    public static string? Binary => Environment.GetEnvironmentVariable("OUTPOST_BINARY") is { Length: > 0 } path ? Path.GetFullPath(path) : null;

    /// <summary>The command line that runs outpost, for a shell: the release binary or `dotnet outpost.dll`.</summary>
    public static string ShellCommand => Binary is { } binary ? $"'{binary}'" : $"dotnet '{OutpostDll}'";

    public static OutpostProcess Start(string home, params string[] args) =>
        StartProgram(home, Binary ?? "dotnet", Binary is null ? [OutpostDll, .. args] : args);

    /// <summary>Starts a program (an outpost binary, or qemu running one) with a test's isolation and output capture.</summary>
    public static OutpostProcess StartProgram(string home, string program, IEnumerable<string> args, IReadOnlyDictionary<string, string>? environment = null,
        string? workingDirectory = null)
    {
        ArgumentNullException.ThrowIfNull(args);
        var info = new ProcessStartInfo(program)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
            WorkingDirectory = workingDirectory ?? "",
        };
        foreach (var arg in args)
        {
            info.ArgumentList.Add(arg);
        }

        foreach (var (name, value) in environment ?? new Dictionary<string, string>())
        {
            info.Environment[name] = value;
        }

        // Isolate each test's processes: their own HOME, no inherited Outpost settings.
        info.Environment["HOME"] = home;
        foreach (var name in new[] { "OUTPOST_SERVER", "OUTPOST_TOKEN", "OUTPOST_CONFIG", "OUTPOST_URL" })
        {
            info.Environment.Remove(name);
        }

        var process = new Process { StartInfo = info, EnableRaisingEvents = true };
        var wrapper = new OutpostProcess(process);
        process.OutputDataReceived += (_, e) => wrapper.OnLine(e.Data);
        process.ErrorDataReceived += (_, e) => wrapper.OnLine(e.Data);
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return wrapper;
    }

    private void OnLine(string? line)
    {
        if (line is null)
        {
            return;
        }

        lock (_lock)
        {
            _all.AppendLine(line);
        }

        _lines.Writer.TryWrite(line);
    }

    public string Output
    {
        get
        {
            lock (_lock)
            {
                return _all.ToString();
            }
        }
    }

    public bool HasExited => _process.HasExited;

    public int Pid => _process.Id;

    /// <summary>Sends a signal by name (STOP freezes the process with its sockets open, CONT thaws it).</summary>
    public void Signal(string signal)
    {
        using var kill = System.Diagnostics.Process.Start("kill", [$"-{signal}", Pid.ToString(System.Globalization.CultureInfo.InvariantCulture)])!;
        kill.WaitForExit();
    }

    public int ExitCode => _process.ExitCode;

    /// <summary>Waits for a line starting with the prefix and returns the rest of it; fails loudly with the output so far.</summary>
    public async Task<string> WaitForLineAsync(string prefix, TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            while (true)
            {
                var line = await _lines.Reader.ReadAsync(cts.Token);
                if (line.StartsWith(prefix, StringComparison.Ordinal))
                {
                    return line[prefix.Length..].Trim();
                }
            }
        }
        catch (OperationCanceledException)
        {
            throw new TimeoutException($"no line starting with '{prefix}' within {timeout}; output so far:\n{Output}");
        }
    }

    /// <summary>
    /// Waits until the process has written the text (stdout and stderr reach us through pipes
    /// and the process's own log queue, so a line can arrive after a signal the test saw first);
    /// fails loudly with the output so far.
    /// </summary>
    public Task WaitForOutputAsync(string text, TimeSpan? timeout = null) =>
        Eventually.UntilAsync(() => Output, o => o.Contains(text, StringComparison.Ordinal), timeout ?? Fleet.Patience,
            $"the process to write '{text}'", o => "\n" + o);

    public async Task<int> WaitForExitAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            await _process.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            throw new TimeoutException($"process did not exit within {timeout}; output:\n{Output}");
        }

        _process.WaitForExit(); // drain redirected output
        return _process.ExitCode;
    }

    /// <summary>Sends SIGTERM, as an operator's Ctrl-C or a service manager would.</summary>
    public async Task StopAsync()
    {
        if (!_process.HasExited)
        {
            Signals.Terminate(_process.Id);
            await WaitForExitAsync(Fleet.Patience);
        }
    }

    public void Kill()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            _process.WaitForExit();
        }
    }

    public async ValueTask DisposeAsync()
    {
        Kill();
        await Task.CompletedTask;
        _process.Dispose();
    }

    /// <summary>
    /// Runs a client command to completion. A client that JIT-compiles on a loaded 2-core box
    /// can take many seconds: slow is not failed, so only a hang (minutes) fails the wait.
    /// </summary>
    public static async Task<(int ExitCode, string Output)> RunAsync(string home, params string[] args)
    {
        await using var process = Start(home, args);
        var code = await process.WaitForExitAsync(ClientTimeout);
        return (code, process.Output);
    }
}

/// <summary>Another program a test runs to completion (kubectl, promtool).</summary>
internal static class Tool
{
    /// <summary>Waits for it to exit and returns its exit code and all it wrote; a hang fails loudly, with what it wrote.</summary>
    public static async Task<(int ExitCode, string Output)> CompleteAsync(Process process, string what)
    {
        ArgumentNullException.ThrowIfNull(process);
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(OutpostProcess.ClientTimeout);
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill();
            Assert.Fail($"{what} did not exit within {OutpostProcess.ClientTimeout.TotalSeconds:F0} s; it wrote:\n{await stdout}{await stderr}");
        }

        return (process.ExitCode, await stdout + await stderr);
    }
}

internal static class Signals
{
    /// <summary>SIGTERM through kill(1): what a service manager sends.</summary>
    public static void Terminate(int pid)
    {
        using var kill = Process.Start("kill", ["-TERM", pid.ToString(System.Globalization.CultureInfo.InvariantCulture)]);
        kill.WaitForExit();
    }
}
