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
    public void Guest_SeesItsArgumentAndTheAppsAndTheRequestsVariables_ThroughArgsGetAndEnvironGet()
    {
        var request = new WagiRequest
        {
            Method = "POST",
            Path = "/env/a/b",
            Route = "/env",
            Query = "x=1&y=é",
            Host = "edge.example",
            Port = 8080,
            RemoteIp = System.Net.IPAddress.Parse("10.1.2.3"),
            Body = "12345"u8.ToArray(),
            Headers = [new("Host", "edge.example:8080"), new("x-trace-id", "t-1"), new("Content-Type", "text/plain"), new("Authorization", "Bearer secret"), new("Content-Length", "5")],
        };

        var outcome = Run("environ.wat", request, env: new() { ["GREETING"] = "héllo wörld", ["EMPTY"] = "" });

        Assert.Null(outcome.Error);
        var lines = Encoding.UTF8.GetString(outcome.Response.Body.Span).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("/env", lines[0]);
        Assert.Equal(
            [
                "GREETING=héllo wörld", "EMPTY=", "GATEWAY_INTERFACE=CGI/1.1", "SERVER_SOFTWARE=Outpost", "SERVER_PROTOCOL=HTTP/1.1",
                "SERVER_NAME=edge.example", "SERVER_PORT=8080", "REQUEST_METHOD=POST", "SCRIPT_NAME=/env", "PATH_INFO=/a/b",
                "PATH_TRANSLATED=/a/b", "QUERY_STRING=x=1&y=é", "REMOTE_ADDR=10.1.2.3", "REMOTE_HOST=10.1.2.3", "CONTENT_LENGTH=5",
                "X_MATCHED_ROUTE=/env", "X_RAW_PATH_INFO=/a/b", "X_FULL_URL=http://edge.example:8080/env/a/b?x=1&y=é",
                "HTTP_HOST=edge.example:8080", "HTTP_X_TRACE_ID=t-1", "CONTENT_TYPE=text/plain",
            ],
            lines[1..]);
    }

    [Theory]
    [InlineData("Status: 404 Not Found\r\nContent-Type: text/plain\r\n\r\nmissing", 404, "missing")]
    [InlineData("Location: /elsewhere\n\n", 302, "")]
    [InlineData("Content-Type:text/html\nX-Extra:  spaced value \n\n<p>", 200, "<p>")]
    [InlineData("\nno headers at all", 200, "no headers at all")]
    public void Parse_ReadsStatusHeadersAndBody(string output, int status, string body)
    {
        var outcome = WagiRunner.Parse(Encoding.UTF8.GetBytes(output), 0, null);

        Assert.Null(outcome.Error);
        Assert.Equal(status, outcome.Response.Status);
        Assert.Equal(body, Encoding.UTF8.GetString(outcome.Response.Body.Span));
        Assert.DoesNotContain(outcome.Response.Headers, h => h.Key.Equals("Status", StringComparison.OrdinalIgnoreCase));
        if (output.Contains("X-Extra", StringComparison.Ordinal))
        {
            Assert.Contains(new KeyValuePair<string, string>("X-Extra", "spaced value"), outcome.Response.Headers);
            Assert.Contains(new KeyValuePair<string, string>("Content-Type", "text/html"), outcome.Response.Headers);
        }
    }

    [Theory]
    [InlineData("Status: abc\n\n", "invalid Status header 'abc'")]
    [InlineData("Status: -200\n\n", "invalid Status header '-200'")]
    [InlineData("Status: 2000\n\n", "invalid Status header '2000'")]
    [InlineData("Status: 99999999999\n\n", "invalid Status header '99999999999'")]
    [InlineData("Status:\n\n", "invalid Status header ''")]
    [InlineData("no colon here\n\n", "malformed header line 'no colon here'")]
    [InlineData("just a body, no blank line", "no CGI header block")]
    public void Parse_RefusesABrokenHeaderBlock_Naming_WhatIsWrong(string output, string error)
    {
        var outcome = WagiRunner.Parse(Encoding.UTF8.GetBytes(output), 0, null);

        Assert.Equal(500, outcome.Response.Status);
        Assert.Contains(error, outcome.Error, StringComparison.Ordinal);
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
