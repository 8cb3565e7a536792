using System.Text;
using Outpost.Core.Resources;
using Outpost.Wasm.Components;
using Outpost.Wasm.Wagi;

namespace Outpost.Wasm.Tests.Components;

/// <summary>wasi:http/proxy components served by the Outpost host: a C component written against the canonical ABI (Components/probe).</summary>
public sealed class ProxyComponentTests : IDisposable
{
    private readonly ComponentHost _host = new();
    private readonly WasmComponent _probe;

    public ProxyComponentTests()
    {
        var bytes = File.ReadAllBytes(Path.Combine(AppContext.BaseDirectory, "Modules", "components", "probe.wasm"));
        _probe = _host.Load("probe", Digest.Compute(bytes), () => bytes);
    }

    private WagiOutcome Get(string path, string method = "GET", byte[]? body = null, AppLimits? limits = null, IReadOnlyList<KeyValuePair<string, string>>? headers = null)
    {
        var at = path.IndexOf('?', StringComparison.Ordinal);
        var request = new WagiRequest
        {
            Method = method,
            Path = at < 0 ? path : path[..at],
            Query = at < 0 ? "" : path[(at + 1)..],
            Route = "/",
            Body = body ?? ReadOnlyMemory<byte>.Empty,
            Headers = headers ?? [],
        };
        return new ComponentRunner(_host).Handle(_probe, request, limits ?? new AppLimits(), null, []);
    }

    private static string Text(WagiOutcome outcome) => Encoding.UTF8.GetString(outcome.Response.Body.Span);

    [Fact]
    public void Probe_IsAProxyOfWasiHttp020()
    {
        Assert.Equal(ComponentKind.Proxy, _probe.Kind);
        Assert.Equal("wasi:http/proxy@0.2.0", _probe.World);
    }

    [Fact]
    public void Hello_AnswersWithMethodPathStatusAndHeaders()
    {
        var outcome = Get("/hello/world?x=1");

        Assert.Null(outcome.Error);
        Assert.Equal(200, outcome.Response.Status);
        Assert.Equal("hello from a component: GET /hello/world?x=1\n", Text(outcome));
        Assert.Contains(outcome.Response.Headers, h => h.Key == "x-outpost-sample" && h.Value == "component");
        Assert.Contains(outcome.Response.Headers, h => h.Key == "content-type" && h.Value == "text/plain; charset=utf-8");
        Assert.Equal(404, Get("/missing").Response.Status);
    }

    [Fact]
    public void Echo_ReadsTheRequestBodyToItsEnd()
    {
        var body = new byte[10_000];
        for (var i = 0; i < body.Length; i++)
        {
            body[i] = (byte)('A' + (i % 26));
        }

        var outcome = Get("/echo", "POST", body);

        Assert.Null(outcome.Error);
        Assert.Equal(body, outcome.Response.Body.ToArray());
    }

    public void Dispose()
    {
        _probe.Dispose();
        _host.Dispose();
    }
}
