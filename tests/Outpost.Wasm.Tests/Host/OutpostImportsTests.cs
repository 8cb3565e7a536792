using System.Text;
using Outpost.Core.Resources;
using Outpost.Wasm.Host;
using Outpost.Wasm.Hosting;
using Outpost.Wasm.Wagi;
using Wasmtime;

namespace Outpost.Wasm.Tests.Host;

public sealed class OutpostImportsTests : IDisposable
{
    private readonly WasmHost _host = new(new WasmHostOptions { MaxInstances = 8 });
    private readonly FakeServices _services = new();

    private static byte[] Wasm(string name) => Module.ConvertText(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Modules", name)));

    private string Run(WasmModule module, params string[] capabilities)
    {
        var outcome = new WagiRunner(_host).Handle(module, new WagiRequest { Method = "GET", Path = "/", Route = "/" },
            new AppEnvironment(new Dictionary<string, string>()), new AppLimits(), new HostGrant("app-1", capabilities.ToHashSet(), _services));
        Assert.True(outcome.Error is null, outcome.Error);
        return Encoding.UTF8.GetString(outcome.Response.Body.Span);
    }

    [Fact]
    public void Kv_And_Publish_ReachTheServices()
    {
        using var module = _host.Compile("counter", Wasm("counter.wat"), new HashSet<string> { "kv", "publish" });

        Assert.Equal("count=1", Run(module, "kv", "publish"));
        Assert.Equal("count=2", Run(module, "kv", "publish"));
        Assert.Equal("2"u8.ToArray(), _services.Kv[("visits", "count")]);
        Assert.Equal([("app-1", "visits", "1"), ("app-1", "visits", "2")], _services.Published);
    }

    [Fact]
    public void Config_Log_AndClock_Work()
    {
        using var module = _host.Compile("config", Wasm("config.wat"), new HashSet<string> { "log", "config", "clock" });

        Assert.Equal("none", Run(module, "log", "config", "clock"));
        _services.Config["greeting"] = "grüezi";
        Assert.Equal("grüezi", Run(module, "log", "config", "clock"));
        Assert.Contains((1, "app-1: handling a request"), _services.Logs);
    }

    [Fact]
    public void Compile_WithoutTheCapability_NamesImportAndCapability()
    {
        var ex = Assert.Throws<ModuleRejectedException>(() => _host.Compile("counter", Wasm("counter.wat"), new HashSet<string> { "kv" }));

        Assert.Contains("outpost.publish", ex.Message, StringComparison.Ordinal);
        Assert.Contains("capability 'publish'", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void UnknownOutpostImport_IsRejectedEvenAtPush()
    {
        var wasm = Module.ConvertText("""(module (import "outpost" "launch_missiles" (func)) (memory (export "memory") 1) (func (export "_start")))""");

        var problems = _host.Validate(wasm);

        Assert.Contains(problems, p => p.Contains("outpost.launch_missiles", StringComparison.Ordinal));
    }

    [Fact]
    public void Validate_AcceptsKnownOutpostImports_CapabilitiesAreCheckedSeparately()
    {
        Assert.Empty(_host.Validate(Wasm("counter.wat")));
        Assert.Equal(2, _host.CheckCapabilities(Wasm("counter.wat"), new HashSet<string>()).Count(p => p.Contains("capability 'kv'", StringComparison.Ordinal)));
    }

    public void Dispose() => _host.Dispose();

    private sealed class FakeServices : IHostServices
    {
        public Dictionary<(string, string), byte[]> Kv { get; } = [];

        public Dictionary<string, string> Config { get; } = [];

        public List<(string App, string Topic, string Payload)> Published { get; } = [];

        public List<(int Level, string Line)> Logs { get; } = [];

        public void Log(string app, long revision, int level, string message) => Logs.Add((level, $"{app}: {message}"));

        public string? GetConfig(string app, string key) => Config.TryGetValue(key, out var v) ? v : null;

        public string? GetSecret(string app, string key) => null;

        public byte[]? KvGet(string app, string bucket, string key) => Kv.TryGetValue((bucket, key), out var v) ? v : null;

        public bool KvSet(string app, string bucket, string key, ReadOnlySpan<byte> value)
        {
            Kv[(bucket, key)] = value.ToArray();
            return true;
        }

        public int KvDelete(string app, string bucket, string key) => Kv.Remove((bucket, key)) ? 1 : 0;

        public bool Publish(string app, string topic, ReadOnlySpan<byte> payload)
        {
            Published.Add((app, topic, Encoding.UTF8.GetString(payload)));
            return true;
        }
    }
}
