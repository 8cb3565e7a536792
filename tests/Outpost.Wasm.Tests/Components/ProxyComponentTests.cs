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

    [Fact]
    public void Headers_ArriveLowercasedAndHopByHopOnesDoNot()
    {
        var outcome = Get("/headers", headers: [new("X-Trace", "abc"), new("Connection", "close"), new("Accept", "text/plain")]);

        var text = Text(outcome);
        Assert.Contains("x-trace: abc\n", text, StringComparison.Ordinal);
        Assert.Contains("accept: text/plain\n", text, StringComparison.Ordinal);
        Assert.DoesNotContain("connection", text, StringComparison.Ordinal);
    }

    [Fact]
    public void Trap_Answers500_AndTheNextRequestIsServed()
    {
        var trapped = Get("/trap");

        Assert.Equal(500, trapped.Response.Status);
        Assert.StartsWith("trap: ", trapped.Error, StringComparison.Ordinal);
        Assert.Equal(200, Get("/hello").Response.Status);
    }

    [Fact]
    public void ReturningWithoutSettingTheResponse_Answers500()
    {
        var outcome = Get("/noset");

        Assert.Equal(500, outcome.Response.Status);
        Assert.Equal("the component returned without setting its response-outparam", outcome.Error);
    }

    [Fact]
    public void Loop_TimesOutWith504()
    {
        var outcome = Get("/loop", limits: new AppLimits { TimeoutMs = 100 });

        Assert.Equal(504, outcome.Response.Status);
        Assert.Equal(WagiLimit.Timeout, outcome.Limit);
    }

    [Fact]
    public void ADroppedHandle_TrapsThatRequest()
    {
        var outcome = Get("/dropped");

        Assert.Equal(500, outcome.Response.Status);
        Assert.Contains("trap", outcome.Error, StringComparison.Ordinal);
        Assert.Equal(200, Get("/hello").Response.Status);
    }

    [Fact]
    public void ReadingPastTheEndOfTheBody_IsClosedAgain()
    {
        var outcome = Get("/pastend", "POST", "abc"u8.ToArray());

        Assert.Equal("closed again\n", Text(outcome));
    }

    [Fact]
    public void ALargeBody_StreamsOutInChunks()
    {
        var outcome = Get("/big?size=65536");

        Assert.Null(outcome.Error);
        Assert.Equal(65536, outcome.Response.Body.Length);
        Assert.Equal((byte)'a', outcome.Response.Body.Span[26]);
    }

    [Fact]
    public void AResponseOverTheAppsCap_IsCutAndCounted()
    {
        var outcome = Get("/big?size=100000", limits: new AppLimits { MaxResponseBytes = 50_000 });

        Assert.Equal(500, outcome.Response.Status);
        Assert.Equal(WagiLimit.Response, outcome.Limit);
        Assert.Contains("maxResponseBytes", outcome.Error, StringComparison.Ordinal);
    }

    public void Dispose()
    {
        _probe.Dispose();
        _host.Dispose();
    }
}
