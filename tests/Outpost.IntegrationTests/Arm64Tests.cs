namespace Outpost.IntegrationTests;

/// <summary>
/// The linux-arm64 release binary, cross-compiled by ./build.sh on this x86-64 machine, run under
/// qemu-aarch64-static (no binfmt here, so qemu is called directly) as an edge node of an x86-64
/// server. `./test.sh --aot` (and CI) builds it and sets OUTPOST_ARM64_BINARY and
/// OUTPOST_ARM64_SYSROOT (arm64 libssl, which .NET loads for TLS); without them the test is skipped.
/// </summary>
[Trait("Category", "aot")]
public sealed class Arm64Tests
{
    [SkippableFact]
    public async Task TheArm64Binary_UnderQemu_JoinsAnX64Server_AndServesHello()
    {
        var binary = Environment.GetEnvironmentVariable("OUTPOST_ARM64_BINARY");
        var sysroot = Environment.GetEnvironmentVariable("OUTPOST_ARM64_SYSROOT");
        Skip.If(string.IsNullOrEmpty(binary) || string.IsNullOrEmpty(sysroot), "no OUTPOST_ARM64_BINARY: run ./test.sh --aot to build and test the arm64 binary");
        Assert.True(File.Exists(binary), $"OUTPOST_ARM64_BINARY={binary} does not exist");

        await using var fleet = new Fleet();
        await fleet.StartServerAsync();
        var token = await fleet.CreateJoinTokenAsync();
        var tokenFile = Path.Combine(fleet.Root, "join.token");
        await File.WriteAllTextAsync(tokenFile, token);
        var (code, output) = await fleet.ClientAsync("apply", "-f", fleet.WriteManifest("hello.yaml", Fleet.HelloApp));
        Assert.True(code == 0, output);

        await using var agent = OutpostProcess.StartProgram(fleet.Home, "qemu-aarch64-static",
            ["-L", "/usr/aarch64-linux-gnu", Path.GetFullPath(binary!), "agent", "--server", fleet.ServerUrl, "--token-file", tokenFile,
                "--name", "arm-1", "--data-dir", fleet.AgentDir("arm-1"), "--gateway", "127.0.0.1:0"],
            new Dictionary<string, string> { ["LD_LIBRARY_PATH"] = Path.Combine(sysroot!, "usr", "lib", "aarch64-linux-gnu") });
        var gateway = await agent.WaitForLineAsync("node arm-1:", Fleet.StartTimeout);
        await Fleet.WaitForBodyAsync(gateway + "/hello", "hello from arm-1 (path /)\n", Fleet.StartTimeout);

        // The server sees an arm64 node: its host facts come from the arm64 binary itself.
        var node = await Eventually.UntilAsync(() => fleet.GetJsonAsync("get", "node", "arm-1"),
            n => (string?)n["status"]?["state"] == "Ready", Fleet.Patience, "arm-1 to be Ready", n => n.ToJsonString());
        Assert.Equal("arm64", (string?)node["status"]?["host"]?["architecture"]);
    }
}
