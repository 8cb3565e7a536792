using System.Text;
using Outpost.Core.Resources;
using Outpost.Wasm.Components;
using Outpost.Wasm.Host;
using Outpost.Wasm.Hosting;
using Outpost.Wasm.Tests.Host;
using Outpost.Wasm.Wagi;

namespace Outpost.Wasm.Tests.Components;

/// <summary>
/// The component samples (samples/components): a wasi:cli/command component from C with the
/// preview 1 adapter, a JavaScript proxy from componentize-js, both on Outpost's WIT interfaces;
/// and components this host must refuse, with the reason named.
/// </summary>
public sealed class ComponentAppTests(ComponentCache cache) : IDisposable, IClassFixture<ComponentCache>
{
    // The JavaScript sample takes seconds to compile: the tests share its precompiled file.
    private readonly ComponentHost _host = new(new WasmHostOptions { CacheDir = cache.Dir });
    private readonly FakeServices _services = new();

    private static byte[] Bytes(string name) => File.ReadAllBytes(Path.Combine(AppContext.BaseDirectory, "Modules", "components", name));

    private WasmComponent Load(string name, params string[] capabilities)
    {
        var bytes = Bytes(name);
        return _host.Load(name, Digest.Compute(bytes), () => bytes, capabilities.ToHashSet());
    }

    private HostGrant Grant(params string[] capabilities) => new("app", capabilities.ToHashSet(), _services);

    [Fact]
    public void Command_RunsForAnEvent_WithItsPayloadOnStdin_AndPublishesThroughOutpostEdge()
    {
        using var ticker = Load("ticker-c.wasm", "publish");
        Assert.Equal(ComponentKind.Command, ticker.Kind);
        Assert.Equal("wasi:cli/command@0.2.12", ticker.World);

        var outcome = new ComponentRunner(_host).Run(ticker, [new("OUTPOST_TRIGGER", "topic"), new("PUBLISH_TO", "echoes")], "ding"u8.ToArray(), new AppLimits(), Grant("publish"));

        Assert.True(outcome.Succeeded, outcome.Error + outcome.Stderr);
        Assert.Equal(("app", "echoes", "topic:ding"), Assert.Single(_services.Published));
        Assert.Contains("published 10 bytes to echoes", outcome.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void Command_ThatExitsNonZero_Fails()
    {
        using var ticker = Load("ticker-c.wasm", "publish");
        _services.RefusePublish = true;

        var outcome = new ComponentRunner(_host).Run(ticker, [new("OUTPOST_TRIGGER", "timer")], ReadOnlyMemory<byte>.Empty, new AppLimits(), Grant("publish"));

        Assert.False(outcome.Succeeded);
        Assert.Equal("exited with code 1", outcome.Error);
        Assert.Contains("publish to component-events refused: the node's outbox refused", outcome.Stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void AnOutpostInterfaceNotGranted_IsRefusedAtLoad_NamingIt()
    {
        var error = Assert.Throws<ModuleRejectedException>(() => Load("ticker-c.wasm"));

        Assert.Contains("'outpost:edge/publish@0.1.0', which needs capability 'publish'", error.Message, StringComparison.Ordinal);
        Assert.Single(_host.CheckCapabilities("ticker", Bytes("ticker-c.wasm"), new HashSet<string>()));
        Assert.Empty(_host.CheckCapabilities("ticker", Bytes("ticker-c.wasm"), new HashSet<string> { "publish" }));
    }

    [Fact]
    public void JavaScriptProxy_ServesWithItsConfig_AndEchoes()
    {
        using var js = Load("http-js.wasm", "config");
        _services.Config["greeting"] = "hola";
        var runner = new ComponentRunner(_host);

        var hello = runner.Handle(js, new WagiRequest { Method = "GET", Path = "/js/x", Query = "a=1", Route = "/js", Host = "edge", Port = 8080 }, new AppLimits(), Grant("config"), []);
        var echo = runner.Handle(js, new WagiRequest { Method = "POST", Path = "/js", Route = "/js", Body = "ping"u8.ToArray() }, new AppLimits(), Grant("config"), []);

        Assert.Null(hello.Error);
        Assert.Equal("hola from a JavaScript component: GET /js/x?a=1\n", Encoding.UTF8.GetString(hello.Response.Body.Span));
        Assert.Contains(hello.Response.Headers, h => h.Key == "x-outpost-sample" && h.Value == "http-js");
        Assert.Equal("ping", Encoding.UTF8.GetString(echo.Response.Body.Span));
    }

    [Fact]
    public void JavaScriptFetch_GoesOutThroughWasiHttp_ToAllowedHostsOnly()
    {
        using var js = Load("http-js.wasm", "config", "http-out");
        _services.Answer = request => new HttpOutResponse(201, [new("Content-Type", "text/plain")], Encoding.UTF8.GetBytes($"seen {request.Method} {request.Url} x-from={request.Headers.FirstOrDefault(h => h.Key == "x-from").Value}"));
        var runner = new ComponentRunner(_host);
        var grant = Grant("config", "http-out") with { HttpOut = new HashSet<string> { "api.example" } };

        var allowed = runner.Handle(js, new WagiRequest { Method = "GET", Path = "/js/fetch", Query = "url=http://api.example/v1/items?x=1", Route = "/js" }, new AppLimits(), grant, []);
        var denied = runner.Handle(js, new WagiRequest { Method = "GET", Path = "/js/fetch", Query = "url=http://elsewhere.example/", Route = "/js" }, new AppLimits(), grant, []);

        Assert.Null(allowed.Error);
        Assert.Equal("upstream 201: seen GET http://api.example/v1/items?x=1 x-from=http-js", Encoding.UTF8.GetString(allowed.Response.Body.Span));
        Assert.Equal(502, denied.Response.Status);
        Assert.StartsWith("fetch failed", Encoding.UTF8.GetString(denied.Response.Body.Span), StringComparison.Ordinal);
        Assert.Single(_services.Requests); // the denied one never left the node
        Assert.Contains(_services.Logs, l => l.Line.Contains("host 'elsewhere.example' is not on the app's http-out allow-list", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("unknown-import.wasm", "it imports 'acme:weather/forecast@1.0.0', which Outpost does not provide")]
    [InlineData("unknown-member.wasm", "it imports 'frobnicate' from 'wasi:http/types@0.2.0', which Outpost does not provide")]
    [InlineData("wasi-0.3.wasm", "it imports 'wasi:clocks/monotonic-clock@0.3.0-rc-2025-09-16' is version 0.3.0-rc-2025-09-16; this host provides wasi:clocks/monotonic-clock at 0.2.x")]
    public void UnsupportedComponents_AreRefused_NamingWhy(string file, string reason)
    {
        var (problems, kind, _) = _host.Validate(file, Bytes(file));

        Assert.Null(kind);
        var problem = Assert.Single(problems);
        Assert.True(problem.Contains(reason, StringComparison.Ordinal), problem);
    }

    [Fact]
    public void ACoreModule_IsNotAComponent()
    {
        var module = File.ReadAllBytes(Path.Combine(AppContext.BaseDirectory, "Modules", "hello.wasm"));

        Assert.False(ComponentHost.IsComponent(module));
        Assert.True(ComponentHost.IsComponent(Bytes("http-c.wasm")));
        Assert.Contains("not a WebAssembly component", Assert.Single(_host.Validate("hello", module).Problems), StringComparison.Ordinal);
    }

    public void Dispose() => _host.Dispose();
}

/// <summary>A precompiled-component cache for one test class, removed after it.</summary>
public sealed class ComponentCache : IDisposable
{
    public string Dir { get; } = Directory.CreateTempSubdirectory("outpost-components-").FullName;

    public void Dispose() => Directory.Delete(Dir, recursive: true);
}
