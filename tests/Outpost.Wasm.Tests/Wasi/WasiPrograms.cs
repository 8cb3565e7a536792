using System.Diagnostics;
using System.Text;

namespace Outpost.Wasm.Tests.Wasi;

/// <summary>
/// The C programs of Wasi/programs, built once per test run with Debian's wasm32-wasi clang
/// (test.sh installs it in CI), and the reference host they are compared with: Node.js's
/// built-in node:wasi, through Wasi/programs/node-wasi.mjs.
/// </summary>
public sealed class WasiPrograms : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), $"outpost-wasi-programs-{Guid.NewGuid():N}");

    public WasiPrograms()
    {
        ProgramsDir = Path.Combine(RepoRoot(), "tests", "Outpost.Wasm.Tests", "Wasi", "programs");
        Directory.CreateDirectory(_dir);
        var build = RunProcess("bash", [Path.Combine(ProgramsDir, "build.sh"), _dir], null, null);
        BuildProblem = build.ExitCode == 0 ? null : $"build.sh failed ({build.ExitCode}): {build.Stderr}";
        Node = FindOnPath("node");
    }

    public string ProgramsDir { get; }

    /// <summary>Why the programs could not be built (no wasm32-wasi toolchain), or null.</summary>
    public string? BuildProblem { get; }

    public string? Node { get; }

    public string PathOf(string program) => Path.Combine(_dir, program + ".wasm");

    public byte[] Bytes(string program) => File.ReadAllBytes(PathOf(program));

    /// <summary>Skips where the toolchain or node is missing; in CI, where test.sh installs both, fails instead.</summary>
    public void Require(bool node = true)
    {
        var ci = Environment.GetEnvironmentVariable("CI") == "true";
        var missing = BuildProblem ?? (node && Node is null ? "node is not installed (apt-get install nodejs)" : null);
        if (missing is not null)
        {
            Assert.False(ci, missing);
            Skip.If(true, missing);
        }
    }

    /// <summary>Runs a program under node:wasi: (stdout, stderr, exit code).</summary>
    public ProcessResult RunNode(string program, IEnumerable<string> runnerOptions, IEnumerable<string> args, string? stdin = null) =>
        RunProcess(Node!, [Path.Combine(ProgramsDir, "node-wasi.mjs"), .. runnerOptions, "--", PathOf(program), .. args], stdin, null);

    /// <summary>
    /// sleep.wasm under node:wasi, which on a busy machine now and then wakes an absolute-deadline
    /// sleep a little early (uvwasi compares it with the realtime clock) and so fails its own check:
    /// the reference's flake, retried, so that what is compared is what node does when it works.
    /// </summary>
    public ProcessResult RunNodeSleep(string milliseconds)
    {
        var result = RunNode("sleep", [], [milliseconds]);
        for (var attempt = 1; attempt < 5 && result.ExitCode != 0; attempt++)
        {
            result = RunNode("sleep", [], [milliseconds]);
        }

        return result;
    }

    public static ProcessResult RunProcess(string file, IEnumerable<string> args, string? stdin, IDictionary<string, string>? env)
    {
        var info = new ProcessStartInfo(file)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var arg in args)
        {
            info.ArgumentList.Add(arg);
        }

        foreach (var (key, value) in env ?? new Dictionary<string, string>())
        {
            info.Environment[key] = value;
        }

        using var process = Process.Start(info)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        process.StandardInput.Write(stdin ?? "");
        process.StandardInput.Close();
        if (!process.WaitForExit(120_000))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{file} {string.Join(' ', args)} did not finish in 120 s");
        }

        return new ProcessResult(process.ExitCode, stdout.Result, stderr.Result);
    }

    private static string? FindOnPath(string name) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':').Select(d => Path.Combine(d, name)).FirstOrDefault(File.Exists);

    internal static string RepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Outpost.slnx")))
            {
                return dir.FullName;
            }
        }

        throw new InvalidOperationException("repository root not found");
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);
}

public sealed record ProcessResult(int ExitCode, string Stdout, string Stderr)
{
    public override string ToString() => $"exit {ExitCode}\n--- stdout\n{Stdout}\n--- stderr\n{Stderr}";
}

/// <summary>A temporary directory tree for preopens, removed afterwards.</summary>
public sealed class Scratch : IDisposable
{
    public Scratch() => Directory.CreateDirectory(Root);

    public string Root { get; } = Path.Combine(Path.GetTempPath(), $"outpost-wasi-{Guid.NewGuid():N}");

    public string Dir(string relative)
    {
        var path = Path.Combine(Root, relative);
        Directory.CreateDirectory(path);
        return path;
    }

    public void Write(string relative, string content)
    {
        var path = Path.Combine(Root, relative);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllText(path, content, Encoding.UTF8);
    }

    public void Dispose() => Directory.Delete(Root, recursive: true);
}
