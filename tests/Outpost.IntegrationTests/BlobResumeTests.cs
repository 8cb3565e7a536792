using System.Net;
using Outpost.IntegrationTests.Faults;

namespace Outpost.IntegrationTests;

public sealed class BlobResumeTests
{
    [Fact]
    public async Task ModuleDownloadCutMidTransfer_ResumesFromWhereItStopped()
    {
        await using var fleet = new Fleet();
        await fleet.StartServerAsync();
        await using var proxy = new FaultProxy(new Uri(fleet.ServerUrl).Port);
        var token = await fleet.CreateJoinTokenAsync();

        // A module of ~1 MiB (a big data segment) so the cut lands inside the transfer.
        var wat = $$"""(module (memory (export "memory") 17) (data (i32.const 0) "{{new string('x', 1_000_000)}}") (func (export "_start")))""";
        Directory.CreateDirectory(Path.Combine(fleet.Root, "manifests"));
        File.WriteAllBytes(Path.Combine(fleet.Root, "manifests", "big.wasm"), Wasmtime.Module.ConvertText(wat));
        var (code, output) = await fleet.ClientAsync("apply", "-f", fleet.WriteManifest("big.yaml", """
            apiVersion: outpost.dev/v1
            kind: Application
            metadata:
              name: big
            spec:
              module:
                path: big.wasm
              triggers:
                http:
                  route: /big
            """));
        Assert.True(code == 0, output);

        proxy.CutAfter(400_000); // join, hello and config are small: this cuts the module download
        var (agent, gateway) = await fleet.StartAgentAsync("edge-1", token, server: proxy.Url);

        // The app answers once the module is complete (it writes no CGI headers, hence 500).
        await Fleet.WaitForStatusAsync(gateway + "/big", HttpStatusCode.InternalServerError, Fleet.Patience);
        await agent.WaitForOutputAsync("Fetched module");
        var fetched = agent.Output.Split('\n').Single(l => l.Contains("Fetched module", StringComparison.Ordinal));
        var resumedAt = long.Parse(fetched[(fetched.IndexOf("resumed at byte ", StringComparison.Ordinal) + 16)..].TrimEnd(')', '\r', ' '), System.Globalization.CultureInfo.InvariantCulture);
        Assert.True(resumedAt > 100_000, $"the download restarted from byte {resumedAt} instead of resuming: {fetched}");
        await agent.WaitForOutputAsync("Sync stream lost");
    }
}
