namespace Outpost.IntegrationTests;

/// <summary>
/// `outpost up` as a new user runs it. It listens on ports it is given, not on port 0, so it runs
/// in the <see cref="RunsAlone"/>: no other test can take those ports in the meantime.
/// </summary>
[Collection(RunsAlone.Name)]
public sealed class UpTests
{
    [Fact]
    public async Task Up_RunsASecureFleet_WithNoExtraSteps_AndLeavesTheUsersOwnConfigAlone()
    {
        await using var fleet = new Fleet();
        var serverPort = Ports.FreeRun(2);
        var gatewayPort = serverPort + 1;
        var dir = Path.Combine(fleet.Root, "up");
        var fleetConfig = Path.Combine(dir, "config.yaml");
        OutpostProcess Up() => OutpostProcess.Start(fleet.Home, "up", "--agents", "1", "--data-dir", dir,
            "--server-port", serverPort.ToString(System.Globalization.CultureInfo.InvariantCulture),
            "--gateway-port", gatewayPort.ToString(System.Globalization.CultureInfo.InvariantCulture),
            "--manifests", Path.Combine(Repository.Root, "samples", "manifests"));

        // The user already talks to a real server: `up` must not take their default away.
        var userConfig = Path.Combine(fleet.Home, ".outpost", "config.yaml");
        Directory.CreateDirectory(Path.GetDirectoryName(userConfig)!);
        const string Theirs = "server: https://outpost.example.com:7440\ntoken: opa_their_own_token\n";
        await File.WriteAllTextAsync(userConfig, Theirs);
        await using (var up = Up())
        {
            await up.WaitForLineAsync("fleet up", Fleet.StartTimeout);
            await Fleet.WaitForBodyAsync($"http://127.0.0.1:{gatewayPort}/hello", "hello from edge-1 (path /)\n", Fleet.Patience);
            var config = Core.Api.ClientConfig.Parse(await File.ReadAllTextAsync(fleetConfig), "config.yaml");
            Assert.StartsWith("https://", config.Server, StringComparison.Ordinal);
            Assert.NotNull(config.CertificateAuthorityPem);
            Assert.True(File.Exists(Path.Combine(dir, "edge-1", "node.crt")), "the agent holds a node certificate");
            await Eventually.UntilAsync(() => OutpostProcess.RunAsync(fleet.Home, "get", "nodes", "--config", fleetConfig),
                r => r.ExitCode == 0 && System.Text.RegularExpressions.Regex.IsMatch(r.Output, @"edge-1\s+Ready\s"), Fleet.Patience, "`outpost get nodes` to list edge-1 Ready", r => r.Output);
            Assert.Equal(Theirs, await File.ReadAllTextAsync(userConfig));
            Assert.Contains($"{userConfig} is yours and was left as it is: export OUTPOST_CONFIG={fleetConfig}", up.Output, StringComparison.Ordinal);
            await up.StopAsync();
        }

        // With no config of their own, the fleet's becomes the default, and plain `outpost get nodes` works.
        File.Delete(userConfig);
        await using (var up = Up())
        {
            await up.WaitForLineAsync("fleet up", Fleet.StartTimeout);
            Assert.Equal(await File.ReadAllTextAsync(fleetConfig), await File.ReadAllTextAsync(userConfig));
            Assert.Contains($"config: {fleetConfig} (also {userConfig}, the default)", up.Output, StringComparison.Ordinal);
            await Eventually.UntilAsync(() => OutpostProcess.RunAsync(fleet.Home, "get", "nodes"),
                r => r.ExitCode == 0 && System.Text.RegularExpressions.Regex.IsMatch(r.Output, @"edge-1\s+Ready\s"), Fleet.Patience, "`outpost get nodes` with the default config", r => r.Output);
            await up.StopAsync();
        }
    }
}
