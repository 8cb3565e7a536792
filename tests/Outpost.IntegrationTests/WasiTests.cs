using System.Diagnostics;
using System.Net;
using System.Text.RegularExpressions;
using Outpost.Wasm.Tests.Wasi;

namespace Outpost.IntegrationTests;

/// <summary>
/// The C programs of tests/Outpost.Wasm.Tests/Wasi/programs on the real processes: as apps of a
/// real agent (a volume kept across requests, spec.files packed by `outpost apply -f` and
/// mounted read-only, a volume's quota, the volume removed with its app), under `outpost wasm
/// run` and behind `outpost wasm serve`. Each answers what Node's node:wasi prints for the same
/// program over the same directories.
/// </summary>
[Trait("Category", "aot")]
public sealed class WasiTests(WasiPrograms programs) : IClassFixture<WasiPrograms>
{
    private const string HelloTxt = "hello from a mounted file\n";
    private const string DeepTxt = "deep\n";

    private const string FilesAndReadonly = """
        apiVersion: outpost.dev/v1
        kind: Application
        metadata:
          name: files
        spec:
          module:
            path: files.wasm
          triggers:
            http:
              route: /files
          volumes:
          - name: data
            mountPath: /data
            sizeLimit: 64Ki
        ---
        apiVersion: outpost.dev/v1
        kind: Application
        metadata:
          name: readonly
        spec:
          module:
            path: readonly.wasm
          triggers:
            http:
              route: /readonly
          files:
          - path: assets
            mountPath: /assets
        """;

    private const string Fill = """
        apiVersion: outpost.dev/v1
        kind: Application
        metadata:
          name: fill
        spec:
          module:
            path: fill.wasm
          triggers:
            http:
              route: /fill
          volumes:
          - name: data
            mountPath: /data
            sizeLimit: 64Ki
        """;

    /// <summary>The read-only tree readonly.wasm expects, under <paramref name="root"/>/assets; returns that directory.</summary>
    private static string WriteAssets(string root)
    {
        var assets = Path.Combine(root, "assets");
        Directory.CreateDirectory(Path.Combine(assets, "nested"));
        File.WriteAllText(Path.Combine(assets, "hello.txt"), HelloTxt);
        File.WriteAllText(Path.Combine(assets, "nested", "deep.txt"), DeepTxt);
        return assets;
    }

    /// <summary>Waits until `outpost describe node` shows the app's first revision Ready on the node.</summary>
    private static Task WaitForReadyAsync(Fleet fleet, string node, string app) =>
        Eventually.UntilAsync(() => fleet.ClientAsync("describe", "node", node),
            r => r.ExitCode == 0 && Regex.IsMatch(r.Output, $@"(?m)^  {Regex.Escape(app)}\s+1\s+Ready\b"),
            Fleet.Patience, $"describe node {node} to show {app} Ready", r => r.Output);

    [SkippableFact]
    public async Task AgentApps_AVolumeKeepsFiles_MountedFilesRead_AsNodeWasiRunsThem_AFullVolumeSaysSo_AndADeletedAppsVolumeGoes()
    {
        programs.Require();
        await using var fleet = new Fleet();
        await fleet.StartServerAsync();
        var (_, gateway) = await fleet.StartAgentAsync("edge-1", await fleet.CreateJoinTokenAsync());
        var dir = Directory.CreateDirectory(Path.Combine(fleet.Root, "wasi")).FullName;
        foreach (var program in new[] { "files", "readonly", "fill" })
        {
            File.Copy(programs.PathOf(program), Path.Combine(dir, program + ".wasm"));
        }

        var assets = WriteAssets(dir);
        var manifest = Path.Combine(dir, "apps.yaml");
        await File.WriteAllTextAsync(manifest, FilesAndReadonly);

        var (code, output) = await fleet.ClientAsync("apply", "-f", manifest);
        Assert.True(code == 0, output + fleet.ServerErrors());
        await WaitForReadyAsync(fleet, "edge-1", "files");
        await WaitForReadyAsync(fleet, "edge-1", "readonly");

        // Each request runs files.wasm once over the app's volume: run by run, what node:wasi prints over a fresh directory.
        // (Nothing polls /files: every request bumps kept.txt.)
        var theirs = Directory.CreateDirectory(Path.Combine(fleet.Root, "node", "data")).FullName;
        for (var run = 1; run <= 2; run++)
        {
            var node = programs.RunNode("files", ["--dir", $"{theirs}::/data"], []);
            Assert.True(node.ExitCode == 0, node.ToString());
            var (status, body) = await Fleet.GetAsync(gateway + "/files");
            Assert.True(status == HttpStatusCode.OK, $"GET /files (request {run}): {(int)status} {body}");
            Assert.Equal(node.Stdout, body);
            Assert.Contains($"kept.txt: now runs={run}\n", body, StringComparison.Ordinal);
        }

        var volume = Path.Combine(fleet.AgentDir("edge-1"), "volumes", "files", "data");
        Assert.Equal("runs=2\n", await File.ReadAllTextAsync(Path.Combine(volume, "kept.txt")));

        // spec.files: the assets directory, packed and uploaded by apply, unpacked read-only on the node.
        var reference = programs.RunNode("readonly", ["--ro-dir", $"{assets}::/assets"], []);
        Assert.True(reference.ExitCode == 0, reference.ToString());
        var (readStatus, readBody) = await Fleet.GetAsync(gateway + "/readonly");
        Assert.True(readStatus == HttpStatusCode.OK, $"GET /readonly: {(int)readStatus} {readBody}");
        Assert.Equal(reference.Stdout, readBody);

        // A volume's quota: the guest's write past it fails with ENOSPC, and the app's log says the volume is full.
        var fill = Path.Combine(dir, "fill.yaml");
        await File.WriteAllTextAsync(fill, Fill);
        (code, output) = await fleet.ClientAsync("apply", "-f", fill);
        Assert.True(code == 0, output + fleet.ServerErrors());
        await WaitForReadyAsync(fleet, "edge-1", "fill");
        var (fillStatus, fillBody) = await Fleet.GetAsync(gateway + "/fill");
        Assert.True(fillStatus == HttpStatusCode.OK, $"GET /fill: {(int)fillStatus} {fillBody}");
        Assert.Contains("ENOSPC", fillBody, StringComparison.Ordinal);
        await Eventually.UntilAsync(() => fleet.ClientAsync("logs", "app/fill", "--node", "edge-1", "--since", "10m"),
            r => r.ExitCode == 0 && r.Output.Contains("is full", StringComparison.Ordinal),
            Fleet.Patience, "the full volume's note in `outpost logs app/fill`", r => r.Output);

        // Deleting the app removes its volume from the node; the other apps' volumes stay.
        (code, output) = await fleet.ClientAsync("delete", "app", "files");
        Assert.True(code == 0, output);
        var appVolumes = Path.GetDirectoryName(volume)!;
        await Eventually.UntilAsync(() => Directory.Exists(appVolumes), exists => !exists, Fleet.Patience, $"{appVolumes} (files' volumes) to be removed");
        await Fleet.WaitForStatusAsync(gateway + "/files", HttpStatusCode.NotFound, Fleet.Patience);
        Assert.True(Directory.Exists(Path.Combine(fleet.AgentDir("edge-1"), "volumes", "fill", "data")), "fill's volume went with files'");
        Assert.Equal(reference.Stdout, (await Fleet.GetAsync(gateway + "/readonly")).Body);
    }

    [SkippableFact]
    public async Task OutpostWasmRun_GivesTheStdoutAndExitCodeNodeWasiGives_WithDirectoriesArgsEnvStdinAndSleep()
    {
        programs.Require();
        using var scratch = new Scratch();
        var home = scratch.Dir("home");

        // files.wasm twice over a writable directory: the second run finds what the first kept.
        var ours = scratch.Dir("ours/data");
        var theirs = scratch.Dir("node/data");
        for (var run = 1; run <= 2; run++)
        {
            var node = programs.RunNode("files", ["--dir", $"{theirs}::/data"], []);
            var result = await RunAsync(home, "", "wasm", "run", programs.PathOf("files"), "--dir", $"{ours}::/data");
            Assert.True(node.ExitCode == 0, node.ToString());
            Assert.True(result.ExitCode == node.ExitCode, result.ToString());
            Assert.Equal(node.Stdout, result.Stdout);
            Assert.Contains($"kept.txt: now runs={run}\n", result.Stdout, StringComparison.Ordinal);
        }

        Assert.Equal("runs=2\n", await File.ReadAllTextAsync(Path.Combine(ours, "kept.txt")));

        // readonly.wasm over --ro-dir: it reads the tree and every write is refused.
        var assets = WriteAssets(scratch.Dir("ro"));
        var reference = programs.RunNode("readonly", ["--ro-dir", $"{assets}::/assets"], []);
        var readOnly = await RunAsync(home, "", "wasm", "run", programs.PathOf("readonly"), "--ro-dir", $"{assets}::/assets");
        Assert.True(reference.ExitCode == 0, reference.ToString());
        Assert.True(readOnly.ExitCode == 0, readOnly.ToString());
        Assert.Equal(reference.Stdout, readOnly.Stdout);
        Assert.Equal(HelloTxt, await File.ReadAllTextAsync(Path.Combine(assets, "hello.txt")));
        Assert.Equal(["hello.txt", "nested"], Directory.EnumerateFileSystemEntries(assets).Select(Path.GetFileName).Order(StringComparer.Ordinal));

        // main's return value, exit(), proc_exit and _Exit are the process's exit code.
        foreach (var args in new[] { new[] { "return", "9" }, ["7"], ["procexit", "42"], ["_Exit"] })
        {
            var exitNode = programs.RunNode("exitcode", [], args);
            var exit = await RunAsync(home, "", ["wasm", "run", programs.PathOf("exitcode"), "--", .. args]);
            Assert.NotEqual(0, exitNode.ExitCode);
            Assert.True(exit.ExitCode == exitNode.ExitCode, $"{string.Join(' ', args)}: node {exitNode.ExitCode}, outpost {exit}");
            Assert.Equal(exitNode.Stdout, exit.Stdout);
            Assert.Contains("exitcode: to stderr", exit.Stderr, StringComparison.Ordinal);
        }

        // sleep(), nanosleep(), clock_nanosleep() and poll() sleep as long as asked.
        var sleepNode = programs.RunNodeSleep("50");
        var sleep = await RunAsync(home, "", "wasm", "run", programs.PathOf("sleep"), "--", "50");
        Assert.True(sleepNode.ExitCode == 0, sleepNode.ToString());
        Assert.True(sleep.ExitCode == 0, sleep.ToString());
        Assert.Equal(sleepNode.Stdout, sleep.Stdout);
        Assert.EndsWith("sleep: all ok\n", sleep.Stdout, StringComparison.Ordinal);

        // The Outpost host functions work without a fleet: the sensor sample's timer run reads the
        // clock, stores its reading in a bucket and publishes it (to stderr here).
        var sensor = await RunAsync(home, "", "wasm", "run", "--env", "OUTPOST_TRIGGER=timer", Path.Combine(Repository.Root, "samples", "apps", "sensor", "sensor.wasm"));
        Assert.True(sensor.ExitCode == 0, sensor.ToString());
        Assert.Contains("[publish readings] {\"seq\":1,", sensor.Stderr, StringComparison.Ordinal);

        // One that sleeps past --timeout-ms is stopped as one in a loop is: exit 124, as timeout(1) says.
        var late = await RunAsync(home, "", "wasm", "run", "--timeout-ms", "200", programs.PathOf("sleep"), "--", "60000");
        Assert.True(late.ExitCode == 124, late.ToString());
        Assert.Contains("timed out after 200 ms", late.Stderr, StringComparison.Ordinal);

        // Stdin, arguments (one with a space) and the environment (an empty value, a value with '=').
        string[] env = ["GREETING=hi", "EMPTY=", "EQUALS=a=b=c"];
        var stdioNode = programs.RunNode("stdio", env.SelectMany(e => new[] { "--env", e }), ["one", "two words"], "hello stdin\n");
        var stdio = await RunAsync(home, "hello stdin\n", ["wasm", "run", programs.PathOf("stdio"), .. env.SelectMany(e => new[] { "--env", e }), "--", "one", "two words"]);
        Assert.True(stdioNode.ExitCode == 0, stdioNode.ToString());
        Assert.True(stdio.ExitCode == 0, stdio.ToString());
        Assert.Equal(stdioNode.Stdout, stdio.Stdout);
        Assert.Contains("GREETING=\"hi\"", stdio.Stdout, StringComparison.Ordinal);
    }

    [SkippableFact]
    public async Task OutpostWasmServe_AnswersEachRequestAsNodeWasiRunsTheProgram_OverTheSameDirectory()
    {
        programs.Require();
        using var scratch = new Scratch();
        var ours = scratch.Dir("ours/data");
        var theirs = scratch.Dir("node/data");
        await using var serve = OutpostProcess.Start(scratch.Dir("home"),
            "wasm", "serve", programs.PathOf("files"), "--route", "/files", "--listen", "127.0.0.1:0", "--dir", $"{ours}::/data");
        var url = await serve.WaitForLineAsync("Serving files.wasm at ", Fleet.StartTimeout);
        Assert.Matches(@"^http://127\.0\.0\.1:[1-9]\d*/files$", url);

        for (var run = 1; run <= 2; run++)
        {
            var node = programs.RunNode("files", ["--dir", $"{theirs}::/data"], []);
            Assert.True(node.ExitCode == 0, node.ToString());
            var (status, body) = await Fleet.GetAsync(url);
            Assert.True(status == HttpStatusCode.OK, $"GET {url} (request {run}): {(int)status} {body}\n{serve.Output}");
            Assert.Equal(node.Stdout, body);
            Assert.Contains($"kept.txt: now runs={run}\n", body, StringComparison.Ordinal);
        }

        Assert.Equal("runs=2\n", await File.ReadAllTextAsync(Path.Combine(ours, "kept.txt")));
        // Stopped as a service manager stops it (SIGTERM: a shell may start a background job with
        // Ctrl-C's SIGINT ignored, never SIGTERM), it exits, and cleanly.
        serve.Signal("TERM");
        await Eventually.UntilAsync(() => serve.HasExited, exited => exited, Fleet.Patience,
            "outpost wasm serve to exit after SIGTERM", _ => "still running; it wrote:\n" + serve.Output);
        Assert.True(await serve.WaitForExitAsync(Fleet.Patience) == 0, $"exit code {serve.ExitCode}; it wrote:\n{serve.Output}");
    }

    /// <summary>
    /// Runs the outpost CLI (the release binary under test, or the JIT build) to completion with
    /// stdin, and its stdout and stderr kept apart; its own HOME. Only a hang (minutes) fails.
    /// </summary>
    internal static async Task<ProcessResult> RunAsync(string home, string stdin, params string[] args)
    {
        var info = new ProcessStartInfo(OutpostProcess.Binary ?? "dotnet")
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        if (OutpostProcess.Binary is null)
        {
            info.ArgumentList.Add(OutpostProcess.OutpostDll);
        }

        foreach (var arg in args)
        {
            info.ArgumentList.Add(arg);
        }

        info.Environment["HOME"] = home;
        using var process = Process.Start(info)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        await process.StandardInput.WriteAsync(stdin);
        process.StandardInput.Close();
        using var timeout = new CancellationTokenSource(OutpostProcess.ClientTimeout);
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"outpost {string.Join(' ', args)} did not exit within {OutpostProcess.ClientTimeout.TotalSeconds:F0} s; it wrote:\n{await stdout}{await stderr}");
        }

        return new ProcessResult(process.ExitCode, await stdout, await stderr);
    }
}
