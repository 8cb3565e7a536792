using System.Diagnostics;

namespace Outpost.IntegrationTests;

/// <summary>
/// `outpost agent install` / `server install` / `uninstall` through the real binary. There is no
/// systemd here, so the files are checked for what systemd will read; installs go under --root.
/// A real install copies the running binary, so it needs the release build (OUTPOST_BINARY).
/// </summary>
[Trait("Category", "aot")]
public sealed class InstallTests
{
    [Fact]
    public async Task DryRun_PrintsTheUnitAndTheSettings_AndWritesNothing()
    {
        await using var fleet = new Fleet();
        var root = Directory.CreateDirectory(Path.Combine(fleet.Root, "image")).FullName;
        var tokenFile = Path.Combine(fleet.Root, "join.token");
        await File.WriteAllTextAsync(tokenFile, "opj_secret_join_token\n");
        var unitBefore = File.Exists("/etc/systemd/system/outpost-agent.service");

        var (code, output) = await OutpostProcess.RunAsync(fleet.Home, "agent", "install", "--server", "https://cloud.example.com:7440", "--token-file", tokenFile,
            "--name", "shop-1", "--labels", "site=shop,tier=edge", "--dry-run");
        Assert.True(code == 0, output);
        Assert.Contains("# would write /etc/systemd/system/outpost-agent.service (mode 0644)", output, StringComparison.Ordinal);
        foreach (var line in new[]
        {
            "EnvironmentFile=/etc/default/outpost-agent", "ExecStart=/usr/local/bin/outpost agent $OUTPOST_AGENT_ARGS", "Restart=always",
            "LimitNOFILE=1048576", "WantedBy=multi-user.target", "After=network-online.target",
        })
        {
            Assert.Contains("\n" + line + "\n", output, StringComparison.Ordinal);
        }

        Assert.Contains("# would write /etc/default/outpost-agent (mode 0600)", output, StringComparison.Ordinal);
        Assert.Contains("\nOUTPOST_SERVER=https://cloud.example.com:7440\n", output, StringComparison.Ordinal);
        Assert.Contains("\nOUTPOST_TOKEN=opj_secret_join_token\n", output, StringComparison.Ordinal);
        Assert.Contains("\nOUTPOST_AGENT_ARGS=\"--name shop-1 --data-dir /var/lib/outpost/agent --gateway 0.0.0.0:8080 --labels site=shop,tier=edge\"\n", output, StringComparison.Ordinal);
        Assert.Contains("# dry run: nothing was written", output, StringComparison.Ordinal);
        Assert.Equal(unitBefore, File.Exists("/etc/systemd/system/outpost-agent.service"));
        Assert.False(File.Exists("/etc/default/outpost-agent") && !unitBefore, "a dry run wrote /etc/default/outpost-agent");

        (code, output) = await OutpostProcess.RunAsync(fleet.Home, "server", "install", "--dry-run", "--root", root);
        Assert.True(code == 0, output);
        Assert.Contains($"# would write {root}/etc/systemd/system/outpost-server.service", output, StringComparison.Ordinal);
        Assert.Contains("\nExecStart=/usr/local/bin/outpost server $OUTPOST_SERVER_ARGS\n", output, StringComparison.Ordinal);
        Assert.Contains("\nOUTPOST_SERVER_ARGS=\"--listen 0.0.0.0:7440 --data-dir /var/lib/outpost/server\"\n", output, StringComparison.Ordinal);
        Assert.Empty(Directory.GetFileSystemEntries(root));

        // Bad input: no token, a URL without its scheme; nothing written either way.
        (code, output) = await OutpostProcess.RunAsync(fleet.Home, "agent", "install", "--server", "https://cloud.example.com:7440", "--root", root);
        Assert.Equal(1, code);
        Assert.Contains("error: a join token is required", output, StringComparison.Ordinal);
        (code, output) = await OutpostProcess.RunAsync(fleet.Home, "agent", "install", "--server", "cloud.example.com:7440", "--token", "t", "--root", root);
        Assert.Equal(1, code);
        Assert.Contains("write it with its scheme, e.g. https://cloud.example.com:7440", output, StringComparison.Ordinal);
        Assert.Empty(Directory.GetFileSystemEntries(root));
    }

    [SkippableFact]
    public async Task Install_WritesTheFilesWithTheirModes_AllOrNothing_AndUninstallRemovesThem()
    {
        await using var fleet = new Fleet();
        var root = Directory.CreateDirectory(Path.Combine(fleet.Root, "image")).FullName;
        string[] install = ["agent", "install", "--server", "https://cloud.example.com:7440", "--token", "opj_t", "--name", "shop-1", "--root", root];
        if (OutpostProcess.Binary is null)
        {
            var (jitCode, jitOutput) = await OutpostProcess.RunAsync(fleet.Home, install);
            Assert.Equal(1, jitCode);
            Assert.Contains("this one runs on dotnet: run install from the release binary", jitOutput, StringComparison.Ordinal);
            Assert.Empty(Directory.GetFileSystemEntries(root));
            Skip.If(true, "a real install copies the release binary: run ./test.sh --aot");
        }

        // Not root: the first path it cannot write is named, and nothing is left behind.
        Directory.CreateDirectory(Path.Combine(root, "etc"));
        if (Environment.UserName == "root" && File.Exists("/usr/sbin/runuser"))
        {
            var info = new ProcessStartInfo("/usr/sbin/runuser", ["-u", "nobody", "--", OutpostProcess.Binary!, .. install]) { RedirectStandardOutput = true, RedirectStandardError = true };
            info.Environment["OUTPOST_LIB_DIR"] = Path.Combine(fleet.Root, "nobody-lib");
            info.Environment["HOME"] = fleet.Root;
            using var asNobody = Process.Start(info)!;
            var (nobodyCode, nobodyOutput) = await Tool.CompleteAsync(asNobody, "outpost agent install as nobody");
            Assert.True(nobodyCode == 1, nobodyOutput);
            Assert.Contains($"error: cannot write {root}/etc/systemd/system/outpost-agent.service: permission denied (install as root", nobodyOutput, StringComparison.Ordinal);
            Assert.Equal([Path.Combine(root, "etc")], Directory.GetFileSystemEntries(root));
            Assert.Empty(Directory.GetFileSystemEntries(Path.Combine(root, "etc")));
        }

        // A path that cannot be a directory fails the second file: the first is not left behind.
        await File.WriteAllTextAsync(Path.Combine(root, "etc", "default"), "a file where a directory belongs");
        var (code, output) = await OutpostProcess.RunAsync(fleet.Home, install);
        Assert.Equal(1, code);
        Assert.Contains($"error: cannot write {root}/etc/default/outpost-agent", output, StringComparison.Ordinal);
        Assert.Contains("nothing was installed", output, StringComparison.Ordinal);
        Assert.Equal([Path.Combine(root, "etc", "default")], Directory.GetFiles(root, "*", SearchOption.AllDirectories));
        File.Delete(Path.Combine(root, "etc", "default"));

        (code, output) = await OutpostProcess.RunAsync(fleet.Home, install);
        Assert.True(code == 0, output);
        var unit = Path.Combine(root, "etc/systemd/system/outpost-agent.service");
        var settings = Path.Combine(root, "etc/default/outpost-agent");
        var binary = Path.Combine(root, "usr/local/bin/outpost");
        Assert.Contains("\nRestart=always\n", await File.ReadAllTextAsync(unit), StringComparison.Ordinal);
        Assert.Contains("\nOUTPOST_TOKEN=opj_t\n", await File.ReadAllTextAsync(settings), StringComparison.Ordinal);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead, File.GetUnixFileMode(unit));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(settings));
        Assert.True(File.GetUnixFileMode(binary).HasFlag(UnixFileMode.OtherExecute));
        Assert.Equal(await File.ReadAllBytesAsync(OutpostProcess.Binary!), await File.ReadAllBytesAsync(binary));
        Assert.Contains("systemd is not running under", output, StringComparison.Ordinal);
        Assert.Empty(Directory.GetFiles(root, "*.tmp", SearchOption.AllDirectories));

        (code, output) = await OutpostProcess.RunAsync(fleet.Home, "uninstall", "--dry-run", "--root", root);
        Assert.True(code == 0, output);
        Assert.Contains($"would remove {unit}", output, StringComparison.Ordinal);
        Assert.True(File.Exists(unit));
        (code, output) = await OutpostProcess.RunAsync(fleet.Home, "uninstall", "--root", root);
        Assert.True(code == 0, output);
        Assert.Empty(Directory.GetFiles(root, "*", SearchOption.AllDirectories));
    }
}
