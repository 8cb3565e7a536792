using System.Text;
using Outpost.Core.Resources;
using Outpost.Wasm.Hosting;
using Outpost.Wasm.Wagi;
using Wasmtime;

namespace Outpost.Wasm.Tests.Wagi;

public sealed class WagiRunnerTests : IDisposable
{
    private readonly WasmHost _host = new();

    private static byte[] Wat(string name) => Encoding.UTF8.GetBytes(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Modules", name)));

    private static byte[] WatToWasm(string name) => Module.ConvertText(Encoding.UTF8.GetString(Wat(name)));

    private WagiOutcome Run(string module, WagiRequest? request = null, AppLimits? limits = null, Dictionary<string, string>? env = null)
    {
        var bytes = module.EndsWith(".wat", StringComparison.Ordinal)
            ? WatToWasm(module)
            : File.ReadAllBytes(Path.Combine(AppContext.BaseDirectory, "Modules", module));
        using var compiled = _host.Compile(module, bytes);
        return new WagiRunner(_host).Handle(compiled, request ?? new WagiRequest { Method = "GET", Path = "/hello", Route = "/hello" },
            env ?? [], limits ?? new AppLimits());
    }

    [Fact]
    public void Hello_AnswersWithNodeNameFromEnvironment()
    {
        var outcome = Run("hello.wasm", env: new() { ["OUTPOST_NODE_NAME"] = "edge-7" });

        Assert.Null(outcome.Error);
        Assert.Equal(200, outcome.Response.Status);
        Assert.Contains(outcome.Response.Headers, h => h.Key == "Content-Type" && h.Value.StartsWith("text/plain", StringComparison.Ordinal));
        var body = Encoding.UTF8.GetString(outcome.Response.Body.Span);
        Assert.Contains("hello", body, StringComparison.Ordinal);
        Assert.Contains("edge-7", body, StringComparison.Ordinal);
    }

    [Fact]
    public void Hello_SeesPathInfoAfterTheRoute()
    {
        var outcome = Run("hello.wasm", new WagiRequest { Method = "GET", Path = "/hello/world", Route = "/hello" });

        Assert.Contains("(path /world)", Encoding.UTF8.GetString(outcome.Response.Body.Span), StringComparison.Ordinal);
    }

    [Fact]
    public void Echo_ReadsBodyFromStdinAndSetsStatus()
    {
        var outcome = Run("echo.wat", new WagiRequest { Method = "POST", Path = "/echo", Route = "/echo", Body = "ping"u8.ToArray() });

        Assert.Equal(201, outcome.Response.Status);
        Assert.Equal("ping", Encoding.UTF8.GetString(outcome.Response.Body.Span));
    }

    [Fact]
    public void InfiniteLoop_TimesOutWith504()
    {
        var outcome = Run("loop.wat", limits: new AppLimits { TimeoutMs = 100 });

        Assert.Equal(504, outcome.Response.Status);
        Assert.Contains("timed out", outcome.Error, StringComparison.Ordinal);
    }

    [Fact]
    public void Unreachable_FailsWith500AndTrapReason()
    {
        var outcome = Run("unreachable.wat");

        Assert.Equal(500, outcome.Response.Status);
        Assert.Contains("trap", outcome.Error, StringComparison.Ordinal);
    }

    [Fact]
    public void Compile_RejectsUnknownImportNamingIt()
    {
        var ex = Assert.Throws<ModuleRejectedException>(() => _host.Compile("bad", WatToWasm("bad-import.wat")));

        Assert.Contains("env.open_socket", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Compile_RejectsBytesThatAreNotWasm()
    {
        var ex = Assert.Throws<ModuleRejectedException>(() => _host.Compile("text", "hello, world"u8));

        Assert.Contains("not a WebAssembly module", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Instances_DoNotShareState()
    {
        var first = Run("hello.wasm", env: new() { ["OUTPOST_NODE_NAME"] = "a" });
        var second = Run("hello.wasm", env: new() { ["OUTPOST_NODE_NAME"] = "b" });

        Assert.Contains("from a", Encoding.UTF8.GetString(first.Response.Body.Span), StringComparison.Ordinal);
        Assert.Contains("from b", Encoding.UTF8.GetString(second.Response.Body.Span), StringComparison.Ordinal);
    }

    public void Dispose() => _host.Dispose();
}
