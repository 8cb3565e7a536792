namespace Outpost.IntegrationTests;

/// <summary>
/// `outpost up` as a new user runs it. It listens on ports it is given, not on port 0, so it runs
/// in the <see cref="RunsAlone"/>: no other test can take those ports in the meantime.
/// </summary>
[Collection(RunsAlone.Name)]
public sealed class UpTests
{
    [Fact]
    public async Task Up_RunsASecureFleet_WithNoExtraSteps()
    {
        await using var fleet = new Fleet();
        int FreePort()
        {
            using var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
            listener.Start();
            return ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
        }

        var (serverPort, gatewayPort) = (FreePort(), FreePort());
        var dir = Path.Combine(fleet.Root, "up");
        await using var up = OutpostProcess.Start(fleet.Home, "up", "--agents", "1", "--data-dir", dir,
            "--server-port", serverPort.ToString(System.Globalization.CultureInfo.InvariantCulture),
            "--gateway-port", gatewayPort.ToString(System.Globalization.CultureInfo.InvariantCulture),
            "--manifests", Path.Combine(FindRepoRoot(), "samples", "manifests"));
        await up.WaitForLineAsync("fleet up", Fleet.StartTimeout);

        await Fleet.WaitForBodyAsync($"http://127.0.0.1:{gatewayPort}/hello", "hello from edge-1 (path /)\n", Fleet.Patience);
        var config = Core.Api.ClientConfig.Parse(await File.ReadAllTextAsync(Path.Combine(dir, "config.yaml")), "config.yaml");
        Assert.StartsWith("https://", config.Server, StringComparison.Ordinal);
        Assert.NotNull(config.CertificateAuthorityPem);
        Assert.True(File.Exists(Path.Combine(dir, "edge-1", "node.crt")), "the agent holds a node certificate");
        await Eventually.UntilAsync(() => OutpostProcess.RunAsync(fleet.Home, "get", "nodes", "--config", Path.Combine(dir, "config.yaml")),
            r => r.ExitCode == 0 && System.Text.RegularExpressions.Regex.IsMatch(r.Output, @"edge-1\s+Ready\s"), Fleet.Patience, "`outpost get nodes` to list edge-1 Ready", r => r.Output);
    }

    private static string FindRepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (Directory.Exists(Path.Combine(dir.FullName, "samples", "manifests")))
            {
                return dir.FullName;
            }
        }

        throw new DirectoryNotFoundException("samples/manifests not found above the test binaries");
    }
}
