using System.Security.Cryptography;

namespace Outpost.IntegrationTests;

/// <summary>
/// The NativeAOT release binary (./build.sh's dist/linux-x64/outpost, named by OUTPOST_BINARY in
/// `./test.sh --aot` and CI) on a machine as a node has it: no .NET runtime, no dotnet on the PATH,
/// its native libraries only inside itself. Skipped when no release binary is under test.
/// </summary>
[Trait("Category", "aot")]
public sealed class ReleaseBinaryTests
{
    [SkippableFact]
    public async Task WithNoDotnetAnywhere_ItExtractsItsLibraries_ServesApps_TrimsOnceSettled_AndReextractsADamagedOne_EvenOnceStamped()
    {
        Skip.If(OutpostProcess.Binary is null, "no OUTPOST_BINARY: run ./test.sh --aot to test the release binary");
        await using var fleet = new Fleet();
        var libs = Directory.CreateDirectory(Path.Combine(fleet.Root, "lib")).FullName;
        var nothing = Directory.CreateDirectory(Path.Combine(fleet.Root, "empty-path")).FullName;
        // The process environment is the test's own; these take dotnet out of it.
        var bare = new Dictionary<string, string> { ["PATH"] = nothing, ["OUTPOST_LIB_DIR"] = libs, ["DOTNET_ROOT"] = "", ["DOTNET_HOST_PATH"] = "" };

        async Task<(OutpostProcess Server, OutpostProcess Agent, string Gateway)> StartAsync()
        {
            var server = OutpostProcess.StartProgram(fleet.Home, OutpostProcess.Binary!,
                ["server", "--data-dir", Path.Combine(fleet.Root, "server"), "--listen", "127.0.0.1:0"], bare);
            var url = await server.WaitForLineAsync("server:", Fleet.StartTimeout);
            var (code, token) = await fleet.ClientAsync("token", "create");
            Assert.True(code == 0, token);
            var agent = OutpostProcess.StartProgram(fleet.Home, OutpostProcess.Binary!,
                ["agent", "--server", url, "--token", token.Trim(), "--name", "edge-1", "--data-dir", fleet.AgentDir("edge-1"), "--gateway", "127.0.0.1:0"], bare);
            return (server, agent, await agent.WaitForLineAsync("node edge-1:", Fleet.StartTimeout));
        }

        var (server, agent, gateway) = await StartAsync();
        await using (server)
        await using (agent)
        {
            var (code, output) = await fleet.ClientAsync("apply", "-f", fleet.WriteManifest("hello.yaml", Fleet.HelloApp));
            Assert.True(code == 0, output);
            await Fleet.WaitForBodyAsync(gateway + "/hello", "hello from edge-1 (path /)\n", Fleet.Patience);
            // The release agent compiles in a child process (`outpost wasm compile`), never in itself.
            var metrics = (await Fleet.GetAsync(gateway + "/_outpost/metrics")).Body;
            Assert.Contains("outpost_agent_modules_compiled_total{node=\"edge-1\",where=\"child\"} 1\n", metrics, StringComparison.Ordinal);
            Assert.Contains("outpost_agent_modules_compiled_total{node=\"edge-1\",where=\"agent\"} 0\n", metrics, StringComparison.Ordinal);
            Assert.Contains("outpost_agent_compiler_failures_total{node=\"edge-1\"} 0\n", metrics, StringComparison.Ordinal);
            // The release server collects its young generation every 32 MB (src/Outpost/Native/startup.c), not the runtime's 6 MB.
            var serverUrl = Core.Api.ClientConfig.Parse(await File.ReadAllTextAsync(fleet.ConfigPath), fleet.ConfigPath).Server;
            using (var request = new HttpRequestMessage(HttpMethod.Get, serverUrl + "/metrics?name[]=outpost_server_gc_gen0_budget_bytes"))
            {
                using var response = await fleet.ApiSendAsync(request);
                var budget = await response.Content.ReadAsStringAsync();
                Assert.True(response.IsSuccessStatusCode, budget);
                Assert.Contains("\noutpost_server_gc_gen0_budget_bytes 33554432\n", budget, StringComparison.Ordinal);
            }


            // Settled, the agent stops mapping the code only its start ran (MB of it), and still serves.
            await Eventually.UntilAsync(
                async () =>
                {
                    var line = (await Fleet.GetAsync(gateway + "/_outpost/metrics")).Body.Split('\n').Single(l => l.StartsWith("outpost_agent_unmapped_bytes{", StringComparison.Ordinal));
                    return long.Parse(line[(line.LastIndexOf(' ') + 1)..], System.Globalization.CultureInfo.InvariantCulture);
                },
                unmapped => unmapped >= 1 << 20, Fleet.Patience, "the agent's memory trim to unmap at least 1 MB");
            await Fleet.WaitForBodyAsync(gateway + "/hello", "hello from edge-1 (path /)\n", Fleet.Patience);
        }

        // Extracted once, into folders named by the content's hash.
        var wasmtime = Assert.Single(Directory.GetFiles(libs, "libwasmtime.so", SearchOption.AllDirectories));
        Assert.Single(Directory.GetFiles(libs, "libe_sqlite3.so", SearchOption.AllDirectories));
        Assert.StartsWith(Path.GetFileName(Path.GetDirectoryName(wasmtime))!, Convert.ToHexStringLower(SHA256.HashData(await File.ReadAllBytesAsync(wasmtime))), StringComparison.Ordinal);

        // A start that finds the library as it was verified stamps it, and later starts skip the
        // hash. Files changed in the last 2 s are not stamped (file times are coarse): wait that out.
        var settled = File.GetLastWriteTimeUtc(wasmtime).AddSeconds(2.5) - DateTime.UtcNow;
        if (settled > TimeSpan.Zero)
        {
            await Task.Delay(settled);
        }

        (server, agent, gateway) = await StartAsync();
        await using (server)
        await using (agent)
        {
            await Fleet.WaitForBodyAsync(gateway + "/hello", "hello from edge-1 (path /)\n", Fleet.Patience);
        }

        Assert.True(File.Exists(wasmtime + ".verified"), "a start that verified libwasmtime.so left no stamp beside it");

        // Someone edits the stamped library in place, its size unchanged: the next start notices,
        // says so and extracts it again.
        await using (var file = new FileStream(wasmtime, FileMode.Open, FileAccess.ReadWrite))
        {
            file.Position = file.Length / 2;
            var original = file.ReadByte();
            file.Position = file.Length / 2;
            file.WriteByte((byte)(original ^ 0xff));
        }

        (server, agent, gateway) = await StartAsync();
        await using (server)
        await using (agent)
        {
            await Fleet.WaitForBodyAsync(gateway + "/hello", "hello from edge-1 (path /)\n", Fleet.Patience);
            // Whichever process loads it first (the server checks modules with Wasmtime too) repairs it.
            var said = $"{wasmtime} does not match its SHA-256 (edited or truncated?): extracting it again";
            await Eventually.UntilAsync(() => server.Output + agent.Output, o => o.Contains(said, StringComparison.Ordinal), Fleet.Patience, "a process to say it re-extracted libwasmtime.so", o => o);
        }

        Assert.StartsWith(Path.GetFileName(Path.GetDirectoryName(wasmtime))!, Convert.ToHexStringLower(SHA256.HashData(await File.ReadAllBytesAsync(wasmtime))), StringComparison.Ordinal);
    }

    [SkippableFact]
    public async Task OnceStarted_TheAgentAndServer_GiveBackTheTypeDataOnlyReadAtStart()
    {
        Skip.If(OutpostProcess.Binary is null, "no OUTPOST_BINARY: run ./test.sh --aot to test the release binary");
        await using var fleet = new Fleet();
        await using var server = OutpostProcess.StartProgram(fleet.Home, OutpostProcess.Binary!,
            ["server", "--data-dir", Path.Combine(fleet.Root, "server"), "--listen", "127.0.0.1:0"]);
        var url = await server.WaitForLineAsync("server:", Fleet.StartTimeout);
        var (code, token) = await fleet.ClientAsync("token", "create");
        Assert.True(code == 0, token);
        await using var agent = OutpostProcess.StartProgram(fleet.Home, OutpostProcess.Binary!,
            ["agent", "--server", url, "--token", token.Trim(), "--name", "edge-1", "--data-dir", fleet.AgentDir("edge-1"), "--gateway", "127.0.0.1:0"]);
        var gateway = await agent.WaitForLineAsync("node edge-1:", Fleet.StartTimeout);
        (code, var output) = await fleet.ClientAsync("apply", "-f", fleet.WriteManifest("hello.yaml", Fleet.HelloApp));
        Assert.True(code == 0, output);
        await Fleet.WaitForBodyAsync(gateway + "/hello", "hello from edge-1 (path /)\n", Fleet.Patience);

        // Each process printed its first line after giving the pages back, and nothing reads them
        // again: found as the runtime finds them, none of their pages is resident. The kernel maps
        // the 64 KB around a page a process touches (fault-around), so pages that near the ends of
        // the range may come back with the data beside them; the rest must stay out.
        const ulong FaultAround = 64 * 1024;
        foreach (var process in new[] { agent, server })
        {
            var range = Outpost.Native.StartupImage.Locate(process.Pid, (address, length) => ReadMemory(process.Pid, address, length));
            Assert.True(range is { Length: > 1_000_000 }, $"process {process.Pid}: no dehydrated type data found in the release binary ({range})");
            var resident = ResidentPages(process.Pid, range!.Value.Start + FaultAround, range.Value.End - FaultAround);
            Assert.True(resident == 0, $"process {process.Pid}: {resident} pages of the start-up-only data ({range.Value.Length} bytes) are still resident");
        }
    }

    private static byte[] ReadMemory(int pid, ulong address, int length)
    {
        using var memory = File.OpenRead($"/proc/{pid}/mem");
        memory.Position = (long)address;
        var bytes = new byte[length];
        memory.ReadExactly(bytes);
        return bytes;
    }

    /// <summary>How many whole pages of [start, end) process <paramref name="pid"/> has in memory (/proc/PID/pagemap).</summary>
    private static int ResidentPages(int pid, ulong start, ulong end)
    {
        var page = (ulong)Environment.SystemPageSize;
        using var pagemap = File.OpenRead($"/proc/{pid}/pagemap");
        var entry = new byte[8];
        var resident = 0;
        for (var p = (start + page - 1) / page; p < end / page; p++)
        {
            pagemap.Position = (long)(p * 8);
            pagemap.ReadExactly(entry);
            resident += (int)(BitConverter.ToUInt64(entry) >> 63);
        }

        return resident;
    }

    [SkippableFact]
    public async Task Up_FromTheOneFileAlone_DeploysTheSamplesItCarries()
    {
        Skip.If(OutpostProcess.Binary is null, "no OUTPOST_BINARY: run ./test.sh --aot to test the release binary");
        await using var fleet = new Fleet();
        // The binary alone in a folder, run from another: no samples beside it or above either.
        var bin = Directory.CreateDirectory(Path.Combine(fleet.Root, "bin")).FullName;
        var binary = Path.Combine(bin, "outpost");
        File.Copy(OutpostProcess.Binary!, binary);
        File.SetUnixFileMode(binary, File.GetUnixFileMode(OutpostProcess.Binary!));
        var elsewhere = Directory.CreateDirectory(Path.Combine(fleet.Root, "elsewhere")).FullName;
        var server = Ports.FreeRun(2);
        var gateway = server + 1;
        var data = Path.Combine(fleet.Root, "fleet");
        await using var up = OutpostProcess.StartProgram(fleet.Home, binary, ["up", "--agents", "1", "--data-dir", data,
            "--server-port", server.ToString(System.Globalization.CultureInfo.InvariantCulture), "--gateway-port", gateway.ToString(System.Globalization.CultureInfo.InvariantCulture)],
            workingDirectory: elsewhere);
        await up.WaitForLineAsync("fleet up", Fleet.StartTimeout);
        await Fleet.WaitForBodyAsync($"http://127.0.0.1:{gateway}/hello", "hello from edge-1 (path /)\n", Fleet.Patience);
        Assert.True(File.Exists(Path.Combine(data, "samples", "manifests", "hello.yaml")));
        Assert.True(File.Exists(Path.Combine(data, "samples", "apps", "sensor", "sensor.wasm")));
        await up.StopAsync();
    }
}
