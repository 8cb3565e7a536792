namespace Outpost.IntegrationTests;

/// <summary>
/// Every client verb, given connection settings a user gets wrong, fails with one clear line on
/// stderr and a non-zero exit: never a stack trace.
/// </summary>
[Trait("Category", "aot")]
public sealed class ClientErrorTests
{
    [Fact]
    public async Task EveryVerb_WithBadConnectionSettings_FailsWithOneClearLine()
    {
        await using var fleet = new Fleet();
        await fleet.StartServerAsync();
        var manifest = fleet.WriteManifest("hello.yaml", Fleet.HelloApp);
        string[][] verbs =
        [
            ["get", "nodes"], ["get", "apps", "-o", "json"], ["describe", "node", "edge-1"], ["apply", "-f", manifest], ["delete", "app", "hello"],
            ["push", Path.Combine(fleet.Root, "manifests", "hello.wasm")], ["token", "create"], ["token", "list"], ["kv", "get", "settings", "mode"],
            ["data", "tail", "readings"], ["get", "apps", "-w"], ["rollout", "status", "app/hello"], ["rollout", "undo", "app/hello"], ["top", "nodes"], ["logs", "app/hello"],
        ];

        var port = new Uri(fleet.ServerUrl).Port;
        int closed;
        using (var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0))
        {
            listener.Start();
            closed = ((System.Net.IPEndPoint)listener.LocalEndpoint).Port; // nothing listens there once this closes
        }

        var token = Core.Api.ClientConfig.Parse(await File.ReadAllTextAsync(fleet.ConfigPath), fleet.ConfigPath).Token;
        // A config for this very server that pins another fleet's CA: the pin alone decides (the
        // client skips the system store when it has one), so the server is refused.
        var otherCa = Path.Combine(fleet.Root, "other-fleet.yaml");
        using (var key = System.Security.Cryptography.ECDsa.Create(System.Security.Cryptography.ECCurve.NamedCurves.nistP256))
        {
            var request = new System.Security.Cryptography.X509Certificates.CertificateRequest("CN=another fleet", key, System.Security.Cryptography.HashAlgorithmName.SHA256);
            request.CertificateExtensions.Add(new System.Security.Cryptography.X509Certificates.X509BasicConstraintsExtension(true, false, 0, true));
            using var ca = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddYears(1));
            await File.WriteAllTextAsync(otherCa, new Core.Api.ClientConfig(fleet.ServerUrl, token, ca.ExportCertificatePem()).ToYaml());
        }

        (string Case, string[] Settings, string Expected)[] cases =
        [
            ("no scheme", ["--server", $"127.0.0.1:{port}", "--token", token], $"write it with its scheme, e.g. https://127.0.0.1:{port}"),
            ("unreachable", ["--server", $"https://127.0.0.1:{closed}", "--token", token], $"cannot reach the Outpost server at https://127.0.0.1:{closed}"),
            ("no CA for it", ["--server", fleet.ServerUrl, "--token", token], "its certificate is not trusted here"),
            ("http to a TLS server", ["--server", $"http://127.0.0.1:{port}", "--token", token], $"use https://127.0.0.1:{port}"),
            ("another fleet's CA", ["--config", otherCa], "does not chain to the pinned CA"),
            ("bad token", ["--config", fleet.ConfigPath, "--token", "opa_not_a_token"], "Unauthorized"),
        ];

        var runs = cases.SelectMany(c => verbs.Select(v => (c.Case, Args: (string[])[.. v, .. c.Settings], c.Expected))).ToList();
        var failures = new System.Collections.Concurrent.ConcurrentQueue<string>();
        await Parallel.ForEachAsync(runs, new ParallelOptions { MaxDegreeOfParallelism = 4 }, async (run, _) =>
        {
            var (code, output) = await OutpostProcess.RunAsync(fleet.Home, run.Args);
            var lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            if (code == 0 || lines.Length != 1 || !lines[0].StartsWith("error: ", StringComparison.Ordinal) || !lines[0].Contains(run.Expected, StringComparison.Ordinal))
            {
                failures.Enqueue($"{run.Case}: outpost {string.Join(' ', run.Args)} exited {code} with:\n{output}");
            }
        });

        Assert.True(failures.IsEmpty, $"{failures.Count} of {runs.Count} runs:\n" + string.Join("\n", failures.Take(6)));
    }

    [Fact]
    public async Task TheConfigsCa_IsUsed_HoweverTheSameServerIsWritten()
    {
        await using var fleet = new Fleet();
        await fleet.StartServerAsync();
        var port = new Uri(fleet.ServerUrl).Port;
        foreach (var server in new[] { fleet.ServerUrl + "/", $"https://localhost:{port}" })
        {
            var (code, output) = await fleet.ClientAsync("get", "nodes", "--server", server);
            Assert.True(code == 0, $"--server {server}: {output}");
            Assert.Contains("No nodes found", output, StringComparison.Ordinal);
        }
    }
}
