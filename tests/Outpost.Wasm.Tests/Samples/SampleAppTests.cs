using System.Diagnostics;
using System.Text;
using Outpost.Core.Resources;
using Outpost.Wasm.Events;
using Outpost.Wasm.Host;
using Outpost.Wasm.Hosting;
using Outpost.Wasm.Wagi;

namespace Outpost.Wasm.Tests.Samples;

/// <summary>The committed sample modules: they behave as documented and are what the build script produces.</summary>
public sealed class SampleAppTests : IDisposable
{
    private readonly WasmHost _host = new(new WasmHostOptions { MaxInstances = 8 });

    private static string RepoRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "Outpost.slnx")))
            {
                return dir.FullName;
            }
        }

        throw new InvalidOperationException("repository root not found");
    }

    private WasmModule Load(string name, params string[] capabilities) =>
        _host.Compile(name, File.ReadAllBytes(Path.Combine(AppContext.BaseDirectory, "Modules", $"{name}.wasm")), capabilities.ToHashSet());

    [Fact]
    public void Echo_ReturnsMethodPathQueryHeadersAndBody()
    {
        using var module = Load("echo");
        var outcome = new WagiRunner(_host).Handle(module, new WagiRequest
        {
            Method = "POST",
            Path = "/echo/a/b",
            Query = "x=1",
            Route = "/echo",
            Headers = [new("User-Agent", "tests"), new("X-Echo", "ping")],
            Body = "hello body"u8.ToArray(),
        }, new Dictionary<string, string>(), new AppLimits());

        var body = Encoding.UTF8.GetString(outcome.Response.Body.Span);
        Assert.Equal(200, outcome.Response.Status);
        Assert.Contains("method: POST", body, StringComparison.Ordinal);
        Assert.Contains("path: /a/b", body, StringComparison.Ordinal);
        Assert.Contains("query: x=1", body, StringComparison.Ordinal);
        Assert.Contains("user-agent: tests", body, StringComparison.Ordinal);
        Assert.Contains("x-echo: ping", body, StringComparison.Ordinal);
        Assert.Contains("body (10 bytes): hello body", body, StringComparison.Ordinal);
    }

    [Fact]
    public void Sensor_OnTimer_StoresAndPublishes_ThenServesTheLastReading()
    {
        using var module = Load("sensor", "kv", "publish", "clock", "log");
        var services = new MemoryServices();
        var grant = new HostGrant("sensor", new HashSet<string> { "kv", "publish", "clock", "log" }, services);
        var env = new AppEnvironment(new Dictionary<string, string>());
        var runner = new EventRunner(_host);

        for (var i = 0; i < 3; i++)
        {
            var tick = runner.Run(module, env, new AppLimits(), grant, [new("OUTPOST_TRIGGER", "timer")], ReadOnlyMemory<byte>.Empty);
            Assert.True(tick.Succeeded, tick.Error);
        }

        Assert.Equal(3, services.Published.Count);
        Assert.All(services.Published, p => Assert.Equal("readings", p.Topic));
        Assert.StartsWith("{\"seq\":3,", services.Published[^1].Payload, StringComparison.Ordinal);
        var http = new WagiRunner(_host).Handle(module, new WagiRequest { Method = "GET", Path = "/sensor", Route = "/sensor" }, env, new AppLimits(), grant);
        Assert.Equal(200, http.Response.Status);
        Assert.Equal(services.Published[^1].Payload, Encoding.UTF8.GetString(http.Response.Body.Span));
    }

    [SkippableFact]
    public void CommittedModules_AreWhatTheBuildScriptProduces()
    {
        var root = RepoRoot();
        var toolchain = File.Exists("/usr/lib/wasm32-wasi/libc.a") && (File.Exists("/usr/bin/clang") || File.Exists("/usr/bin/clang-14"));
        Skip.IfNot(toolchain, "SKIPPED LOUDLY: the wasm32-wasi C toolchain (clang, lld, wasi-libc, libclang-rt-dev-wasm32) is not installed; cannot check the committed samples");
        var output = Directory.CreateTempSubdirectory("outpost-samples-").FullName;
        try
        {
            using var build = Process.Start(new ProcessStartInfo("bash", [Path.Combine(root, "samples", "apps", "build.sh"), output]) { RedirectStandardError = true, RedirectStandardOutput = true })!;
            var stdout = build.StandardOutput.ReadToEndAsync();
            var stderr = build.StandardError.ReadToEndAsync(); // both at once: a full stderr pipe must not stall the build
            Assert.True(build.WaitForExit(TimeSpan.FromMinutes(5)), "samples/apps/build.sh did not finish within 5 minutes");
            var log = stdout.Result + stderr.Result;
            Assert.True(build.ExitCode == 0, log);

            foreach (var built in Directory.GetFiles(output, "*.wasm"))
            {
                var name = Path.GetFileNameWithoutExtension(built);
                var committed = Path.Combine(root, "samples", "apps", name, $"{name}.wasm");
                Assert.True(File.ReadAllBytes(committed).AsSpan().SequenceEqual(File.ReadAllBytes(built)),
                    $"samples/apps/{name}/{name}.wasm differs from what samples/apps/build.sh builds: rebuild and commit it");
            }

            Assert.Equal(Directory.GetDirectories(Path.Combine(root, "samples", "apps")).Length, Directory.GetFiles(output, "*.wasm").Length);
        }
        finally
        {
            Directory.Delete(output, recursive: true);
        }
    }

    public void Dispose() => _host.Dispose();

    private sealed class MemoryServices : IHostServices
    {
        private readonly Dictionary<(string, string), byte[]> _kv = [];

        public List<(string Topic, string Payload)> Published { get; } = [];

        public void Log(string app, long revision, int level, string message)
        {
        }

        public string? GetConfig(string app, string key) => null;

        public string? GetSecret(string app, string key) => null;

        public byte[]? KvGet(string app, string bucket, string key) => _kv.TryGetValue((bucket, key), out var v) ? v : null;

        public bool KvSet(string app, string bucket, string key, ReadOnlySpan<byte> value)
        {
            _kv[(bucket, key)] = value.ToArray();
            return true;
        }

        public int KvDelete(string app, string bucket, string key) => _kv.Remove((bucket, key)) ? 1 : 0;

        public bool Publish(string app, string topic, ReadOnlySpan<byte> payload)
        {
            Published.Add((topic, Encoding.UTF8.GetString(payload)));
            return true;
        }

        public HttpOutResponse HttpRequest(string app, HttpOutRequest request, TimeSpan timeout) => throw new HttpOutException("no network in this test");
    }
}
