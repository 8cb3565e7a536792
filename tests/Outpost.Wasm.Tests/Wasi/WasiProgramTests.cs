using System.Diagnostics;
using System.Text;
using Outpost.Core.Resources;
using Outpost.Wasm.Hosting;
using Outpost.Wasm.Wagi;
using Outpost.Wasm.Wasi;

namespace Outpost.Wasm.Tests.Wasi;

/// <summary>
/// Real WASI programs built here from C run on Outpost's WASI (as `outpost wasm run` and the
/// agent run them) and under Node.js's node:wasi: the same output and exit code for the same
/// program, arguments, environment and preopens. Where node is not a usable reference (it has
/// no read-only preopens, follows some escaping host symlinks, and a trap is a JavaScript
/// exception there) the test says what Outpost does instead.
/// </summary>
public sealed class WasiProgramTests(WasiPrograms programs) : IClassFixture<WasiPrograms>, IDisposable
{
    private readonly WasmHost _host = new(new WasmHostOptions { MaxInstances = 8 });
    private readonly Scratch _scratch = new();

    private WasiCommandResult Run(string program, out string stdout, out string stderr, IEnumerable<WasiMount>? mounts = null,
        IEnumerable<string>? args = null, IEnumerable<KeyValuePair<string, string>>? env = null, string stdin = "", AppLimits? limits = null)
    {
        using var module = _host.Compile(program, programs.Bytes(program));
        using var opened = WasiMounts.Open(mounts ?? []);
        using var output = new MemoryStream();
        using var errors = new MemoryStream();
        var result = WasiCommand.Run(_host, module, new WasiCommandOptions
        {
            Args = [program + ".wasm", .. args ?? []],
            Env = [.. env ?? []],
            Mounts = opened,
            Stdin = new MemoryStream(Encoding.UTF8.GetBytes(stdin)),
            Stdout = output,
            Stderr = errors,
            Limits = limits ?? new AppLimits(),
        });
        stdout = Encoding.UTF8.GetString(output.ToArray());
        stderr = Encoding.UTF8.GetString(errors.ToArray());
        return result;
    }

    [SkippableFact]
    public void Files_InAWritableDirectory_AsNodeDoes_AndTheyPersistAcrossRuns()
    {
        programs.Require();
        var ours = _scratch.Dir("ours/data");
        var theirs = _scratch.Dir("node/data");
        for (var run = 1; run <= 2; run++)
        {
            var node = programs.RunNode("files", ["--dir", $"{theirs}::/data"], []);
            var result = Run("files", out var stdout, out var stderr, [new WasiMount("/data", ours, ReadOnly: false)]);

            Assert.True(node.ExitCode == 0, node.ToString());
            Assert.Equal(node.Stdout, stdout);
            Assert.Equal(node.ExitCode, result.ExitCode);
            Assert.Contains($"kept.txt: now runs={run}\n", stdout, StringComparison.Ordinal);
            Assert.EndsWith("files: all ok\n", stdout, StringComparison.Ordinal);
        }

        Assert.Equal("runs=2\n", File.ReadAllText(Path.Combine(ours, "kept.txt")));
        Assert.Equal(["kept.txt"], Directory.EnumerateFileSystemEntries(ours).Select(Path.GetFileName));
    }

    [SkippableFact]
    public void ReadOnlyMount_ReadsAndListsLikeNode_AndRefusesEveryChange()
    {
        programs.Require();
        _scratch.Write("assets/hello.txt", "hello from a mounted file\n");
        _scratch.Write("assets/nested/deep.txt", "deep\n");
        var assets = Path.Combine(_scratch.Root, "assets");
        var before = Snapshot(assets);

        // node:wasi has no read-only preopens; the runner's --ro-dir refuses writes the same way.
        var node = programs.RunNode("readonly", ["--ro-dir", $"{assets}::/assets"], []);
        var result = Run("readonly", out var stdout, out _, [new WasiMount("/assets", assets, ReadOnly: true)]);

        Assert.True(node.ExitCode == 0, node.ToString());
        Assert.Equal(node.Stdout, stdout);
        Assert.Equal(0, result.ExitCode);
        Assert.Contains("create new.txt: refused", stdout, StringComparison.Ordinal);
        Assert.Equal(before, Snapshot(assets));
    }

    [SkippableFact]
    public void Escapes_DotDotAbsoluteAndSymlinks_AreRefused_EvenThroughLinksTheHostMade()
    {
        programs.Require();
        var data = _scratch.Dir("esc/data");
        _scratch.Write("esc/outside.txt", "outside\n");
        var node = programs.RunNode("escape", ["--dir", $"{data}::/data"], []);
        var result = Run("escape", out var stdout, out _, [new WasiMount("/data", data, ReadOnly: false)]);
        Assert.True(node.ExitCode == 0, node.ToString());
        Assert.Equal(node.Stdout, stdout);
        Assert.Equal(0, result.ExitCode);

        // Links planted by someone else in the directory: every one leading out is refused
        // (node:wasi follows hostetc -> /etc in the middle of a path; Outpost does not).
        File.CreateSymbolicLink(Path.Combine(data, "hostabs"), "/etc/passwd");
        File.CreateSymbolicLink(Path.Combine(data, "hostout"), "../outside.txt");
        Directory.CreateSymbolicLink(Path.Combine(data, "hostup"), "../..");
        Directory.CreateSymbolicLink(Path.Combine(data, "hostetc"), "/etc");
        var proof = Path.Combine(_scratch.Root, "escape-proof.txt");
        File.CreateSymbolicLink(Path.Combine(data, "hostnew"), proof);
        result = Run("escape", out stdout, out _, [new WasiMount("/data", data, ReadOnly: false)], ["/data", "hostlinks"]);

        Assert.True(result.ExitCode == 0, stdout);
        Assert.Contains("open hostetc/passwd (hostetc -> /etc): refused", stdout, StringComparison.Ordinal);
        Assert.DoesNotContain("OPENED\nescape", stdout, StringComparison.Ordinal);
        Assert.EndsWith("escape: all ok\n", stdout, StringComparison.Ordinal);
        Assert.False(File.Exists(proof));
    }

    [SkippableFact]
    public void Sleep_WaitsAsLongAsAsked_AsNodeDoes()
    {
        programs.Require();
        var node = programs.RunNodeSleep("50");
        var result = Run("sleep", out var stdout, out _, args: ["50"]);

        Assert.True(node.ExitCode == 0, node.ToString());
        Assert.Equal(node.Stdout, stdout);
        Assert.Equal(0, result.ExitCode);
        Assert.EndsWith("sleep: all ok\n", stdout, StringComparison.Ordinal);
    }

    [SkippableFact]
    public void Sleep_PastTheAppsTimeLimit_EndsTheRunAsATimeout()
    {
        programs.Require(node: false);
        var clock = Stopwatch.StartNew();
        var result = Run("sleep", out _, out _, args: ["30000"], limits: new AppLimits { TimeoutMs = 300 });

        Assert.True(result.TimedOut, result.Error);
        Assert.Equal(WasiCommand.TimeoutExitCode, result.ExitCode);
        Assert.InRange(clock.ElapsedMilliseconds, 250, 10_000);
    }

    [SkippableTheory]
    [InlineData("")]
    [InlineData("0")]
    [InlineData("return 9")]
    [InlineData("procexit")]
    [InlineData("procexit 42")]
    [InlineData("_Exit")]
    public void ExitCodes_AreNodes(string arguments)
    {
        var args = arguments.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        programs.Require();
        var node = programs.RunNode("exitcode", [], args);
        var result = Run("exitcode", out var stdout, out var stderr, args: args);

        Assert.Equal(node.Stdout, stdout);
        Assert.Equal(node.Stderr, stderr);
        Assert.Equal(node.ExitCode, result.ExitCode);
        Assert.Null(result.Error);
    }

    [SkippableFact]
    public void Trap_KeepsWhatWasWritten_AndExitsAsWasmtimeDoes()
    {
        programs.Require();
        var node = programs.RunNode("exitcode", [], ["trap"]);
        var result = Run("exitcode", out var stdout, out _, args: ["trap"]);

        Assert.Equal(node.Stdout, stdout);
        Assert.Equal(1, node.ExitCode); // node: an uncaught WebAssembly.RuntimeError
        Assert.Equal(WasiCommand.TrapExitCode, result.ExitCode); // 128 + SIGABRT, as `wasmtime run` exits
        Assert.Contains("unreachable", result.Error, StringComparison.Ordinal);
    }

    [SkippableFact]
    public void Stdio_ArgsAndEnvironment_AsNodeDoes()
    {
        programs.Require();
        string[] args = ["one", "two words"];
        var node = programs.RunNode("stdio", ["--env", "GREETING=hi", "--env", "EMPTY=", "--env", "EQUALS=a=b=c"], args, "hello stdin\n");
        var result = Run("stdio", out var stdout, out _, args: args, env: [new("GREETING", "hi"), new("EMPTY", ""), new("EQUALS", "a=b=c")], stdin: "hello stdin\n");

        Assert.True(node.ExitCode == 0, node.ToString());
        Assert.Equal(node.Stdout, stdout);
        Assert.Equal(0, result.ExitCode);
    }

    [SkippableFact]
    public void AsAWagiApp_AVolumeKeepsFilesAcrossRequests_AndTheBodyIsWhatNodePrints()
    {
        programs.Require();
        var volume = _scratch.Dir("volume");
        var theirs = _scratch.Dir("node/data");
        using var module = _host.Compile("files", programs.Bytes("files"));
        using var mounts = WasiMounts.Open([new WasiMount("/data", volume, ReadOnly: false, new VolumeQuota(1 << 20))]);
        var runner = new WagiRunner(_host);
        for (var request = 1; request <= 2; request++)
        {
            var node = programs.RunNode("files", ["--dir", $"{theirs}::/data"], []);
            var outcome = runner.Handle(module, new WagiRequest { Method = "GET", Path = "/files", Route = "/files" }, new AppEnvironment(new Dictionary<string, string>()), new AppLimits(), mounts: mounts);

            Assert.True(outcome.Error is null, outcome.Error + outcome.Stderr);
            Assert.Equal(200, outcome.Response.Status);
            Assert.Equal(node.Stdout, Encoding.UTF8.GetString(outcome.Response.Body.Span));
        }

        Assert.Equal("runs=2\n", File.ReadAllText(Path.Combine(volume, "kept.txt")));
    }

    [SkippableFact]
    public void Volume_OverItsQuota_TheGuestGetsEnospc_FreedRoomIsUsable_AndTheRefusalIsCounted()
    {
        programs.Require(node: false);
        var volume = _scratch.Dir("quota");
        File.WriteAllBytes(Path.Combine(volume, "existing.bin"), new byte[16 * 1024]);
        var quota = VolumeQuota.ForDirectory(volume, 64 * 1024);
        Assert.Equal(16 * 1024, quota.UsedBytes);
        using var module = _host.Compile("fill", programs.Bytes("fill"));
        using var mounts = WasiMounts.Open([new WasiMount("/data", volume, ReadOnly: false, quota)]);
        var outcome = new WagiRunner(_host).Handle(module, new WagiRequest { Method = "GET", Path = "/fill", Route = "/fill" },
            new AppEnvironment(new Dictionary<string, string>()), new AppLimits(), mounts: mounts);

        var body = Encoding.UTF8.GetString(outcome.Response.Body.Span);
        Assert.Contains("wrote 49152 bytes: ENOSPC", body, StringComparison.Ordinal);
        Assert.Contains("after truncating to half, wrote 24576 bytes again", body, StringComparison.Ordinal);
        Assert.Equal(64 * 1024, quota.UsedBytes);
        Assert.Equal(49152, new FileInfo(Path.Combine(volume, "fill.bin")).Length);
        Assert.Equal(1, quota.Refusals);
        Assert.Contains(outcome.Notes, n => n.Contains("volume at /data is full", StringComparison.Ordinal) && n.Contains("65536", StringComparison.Ordinal));
        Assert.Equal(WagiLimit.Volume, outcome.Limit); // counted: outpost_app_limit_hits_total{limit="volume"}
    }

    [Fact]
    public void GuestPointersOutsideItsMemory_FailThatCallWithFault_AndTheHostCarriesOn()
    {
        _scratch.Write("ro/hello.txt", "hi\n");
        using var module = _host.Compile("badptr", Wasmtime.Module.ConvertText(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Modules", "wasi-badptr.wat"))));
        using var mounts = WasiMounts.Open([new WasiMount("/", Path.Combine(_scratch.Root, "ro"), ReadOnly: true)]);
        var result = WasiCommand.Run(_host, module, new WasiCommandOptions { Mounts = mounts });

        Assert.Null(result.Error);
        Assert.Equal(21 | (21 << 8) | (21 << 16) | (28 << 24), result.ExitCode); // FAULT from path_open, fd_read and poll_oneoff; INVAL for too many iovecs
    }

    /// <summary>Every path under a directory with its content, to show nothing changed.</summary>
    private static string Snapshot(string root) => string.Join("\n", Directory.EnumerateFileSystemEntries(root, "*", SearchOption.AllDirectories)
        .Order(StringComparer.Ordinal)
        .Select(p => Path.GetRelativePath(root, p) + (File.Exists(p) ? "=" + File.ReadAllText(p) : "/")));

    public void Dispose()
    {
        _host.Dispose();
        _scratch.Dispose();
    }
}
