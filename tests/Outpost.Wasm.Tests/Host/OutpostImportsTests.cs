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

    private string Run(WasmModule module, params string[] capabilities) => Run(module, new HostGrant("app-1", capabilities.ToHashSet(), _services));

    private string Run(WasmModule module, HostGrant grant, Dictionary<string, string>? env = null, AppLimits? limits = null)
    {
        var outcome = new WagiRunner(_host).Handle(module, new WagiRequest { Method = "GET", Path = "/", Route = "/" },
            new AppEnvironment(env ?? []), limits ?? new AppLimits(), grant);
        Assert.True(outcome.Error is null, outcome.Error);
        return Encoding.UTF8.GetString(outcome.Response.Body.Span);
    }

    private WasmModule Caller() =>
        _host.Compile("caller", File.ReadAllBytes(Path.Combine(AppContext.BaseDirectory, "Modules", "caller.wasm")), new HashSet<string> { "http-out" });

    private HostGrant HttpOutGrant(params string[] hosts) =>
        new("caller", new HashSet<string> { "http-out" }, _services) { HttpOut = hosts.ToHashSet() };

    [Fact]
    public void HttpOut_SendsTheGuestsRequest_AndHandsBackStatusAndBody()
    {
        using var module = Caller();
        _services.Answer = request => new HttpOutResponse(200, [new("Content-Type", "text/plain")], Encoding.UTF8.GetBytes($"reading 21.5 for {request.Url.PathAndQuery}"));

        var body = Run(module, HttpOutGrant("temps.mesh"));

        Assert.Equal("caller on  got 200 from http://temps.mesh/reading: reading 21.5 for /reading", body);
        var sent = Assert.Single(_services.Requests);
        Assert.Equal("GET", sent.Method);
        Assert.Equal("http://temps.mesh/reading", sent.Url.ToString());
        Assert.Empty(sent.Body);
    }

    [Fact]
    public void HttpOut_RefusesHostsOffTheAllowList_WithALogLineAndMinusOne_AndSendsNothing()
    {
        using var module = Caller();
        _services.Answer = _ => throw new InvalidOperationException("must not be sent");

        var body = Run(module, HttpOutGrant("temps.mesh"), new() { ["TARGET"] = "http://api.example.com/secrets" });

        Assert.StartsWith("caller on  could not reach http://api.example.com/secrets", body, StringComparison.Ordinal);
        Assert.Empty(_services.Requests);
        Assert.Contains(_services.Logs, l => l.Level == 2 && l.Line.Contains("host 'api.example.com' is not on the app's http-out allow-list (temps.mesh)", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("https://temps.mesh/", "use http://temps.mesh/")]
    [InlineData("ftp://temps.mesh/", "not an absolute http:// or https:// URL")]
    [InlineData("http://user:pw@temps.mesh/", "not an absolute http:// or https:// URL")]
    [InlineData("temps.mesh/reading", "not an absolute http:// or https:// URL")]
    public void HttpOut_RefusesMalformedOrUnsafeUrls(string target, string reason)
    {
        using var module = Caller();
        _services.Answer = _ => throw new InvalidOperationException("must not be sent");

        Run(module, HttpOutGrant("temps.mesh"), new() { ["TARGET"] = target });

        Assert.Empty(_services.Requests);
        Assert.Contains(_services.Logs, l => l.Line.Contains(reason, StringComparison.Ordinal));
    }

    [Fact]
    public void HttpOut_AFailedRequest_IsMinusOneWithTheReasonInTheLog_AndAWaitGetsWhatIsLeftOfTheTimeout()
    {
        using var module = Caller();
        TimeSpan? given = null;
        _services.Answer = request => throw new HttpOutException("service 'temps': no endpoint could be reached");
        _services.Timeouts = t => given = t;

        var body = Run(module, HttpOutGrant("temps.mesh"), limits: new AppLimits { TimeoutMs = 1500 });

        Assert.StartsWith("caller on  could not reach", body, StringComparison.Ordinal);
        Assert.Contains(_services.Logs, l => l.Line.Contains("http-out GET http://temps.mesh/reading: service 'temps': no endpoint could be reached", StringComparison.Ordinal));
        Assert.True(given is { } t && t > TimeSpan.Zero && t <= TimeSpan.FromMilliseconds(1500), $"timeout given: {given}");
    }

    [Fact]
    public void HttpOut_WithoutTheCapability_IsRefusedAtCompile()
    {
        var ex = Assert.Throws<ModuleRejectedException>(() =>
            _host.Compile("caller", File.ReadAllBytes(Path.Combine(AppContext.BaseDirectory, "Modules", "caller.wasm")), new HashSet<string>()));

        Assert.Contains("capability 'http-out'", ex.Message, StringComparison.Ordinal);
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
}
