using System.Diagnostics;

namespace Outpost.IntegrationTests;

/// <summary>
/// The repository's `./outpost` launcher builds only when the sources changed since its last
/// build. Run in a copy of the layout with a stand-in `dotnet` that records what it was asked.
/// </summary>
public sealed class LauncherTests : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("outpost-launcher-").FullName;

    [Fact]
    public async Task ATouchedSampleManifest_BuildsOnce_NotOnEveryCall()
    {
        var repo = Repository.Root;
        File.Copy(Path.Combine(repo, "outpost"), Path.Combine(_root, "outpost"));
        var out_ = Directory.CreateDirectory(Path.Combine(_root, "src", "Outpost", "bin", "Release", "net10.0")).FullName;
        Directory.CreateDirectory(Path.Combine(_root, "src", "Outpost"));
        await File.WriteAllTextAsync(Path.Combine(_root, "src", "Outpost", "Program.cs"), "// the sources");
        var manifest = Path.Combine(Directory.CreateDirectory(Path.Combine(_root, "samples", "manifests")).FullName, "hello.yaml");
        await File.WriteAllTextAsync(manifest, "kind: Application\n");
        await File.WriteAllTextAsync(Path.Combine(out_, "outpost.dll"), "");
        var bin = Directory.CreateDirectory(Path.Combine(_root, "fake-bin")).FullName;
        var log = Path.Combine(_root, "dotnet.log");
        // A build leaves outpost.dll as it was (nothing to compile), as the real one does.
        var typed = Path.Combine(_root, "typed-as");
        await File.WriteAllTextAsync(Path.Combine(bin, "dotnet"), $"#!/bin/sh\necho \"$1\" >> '{log}'\necho \"$OUTPOST_COMMAND\" > '{typed}'\n");
        File.SetUnixFileMode(Path.Combine(bin, "dotnet"), UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);

        async Task<string[]> CallAsync()
        {
            File.Delete(log);
            var info = new ProcessStartInfo(Path.Combine(_root, "outpost"), ["--version"]) { RedirectStandardOutput = true, RedirectStandardError = true };
            info.Environment["PATH"] = bin + ":" + Environment.GetEnvironmentVariable("PATH");
            using var process = Process.Start(info)!;
            var (code, output) = await Tool.CompleteAsync(process, "./outpost --version");
            Assert.True(code == 0, output);
            return File.Exists(log) ? [.. (await File.ReadAllLinesAsync(log)).Select(l => l == "build" ? "build" : "run")] : [];
        }

        Assert.Equal(["build", "run"], await CallAsync()); // never built by it: builds
        Assert.Equal(["run"], await CallAsync());
        File.SetLastWriteTimeUtc(manifest, DateTime.UtcNow); // edited (touched), as docs/rollouts.md suggests
        Assert.Equal(["build", "run"], await CallAsync());
        Assert.Equal(["run"], await CallAsync()); // and not again
        Assert.Equal(["run"], await CallAsync());
        Assert.Equal(Path.Combine(_root, "outpost"), (await File.ReadAllTextAsync(typed)).Trim()); // hints name the command as typed
    }

    public void Dispose() => Directory.Delete(_root, recursive: true);
}
