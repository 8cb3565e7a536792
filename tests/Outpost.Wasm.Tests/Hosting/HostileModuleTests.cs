using System.Text;
using Outpost.Core.Resources;
using Outpost.Wasm.Hosting;
using Outpost.Wasm.Wagi;
using Wasmtime;

namespace Outpost.Wasm.Tests.Hosting;

/// <summary>A hostile guest fails its own request with a clear status; the host survives it.</summary>
public sealed class HostileModuleTests : IDisposable
{
    private readonly WasmHost _host = new(new WasmHostOptions { MaxInstances = 16, MaxMemoryMiB = 64 });

    private static byte[] Wasm(string name) =>
        Module.ConvertText(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Modules", name)));

    private WagiOutcome Run(string name, AppLimits? limits = null)
    {
        using var module = _host.Compile(name, Wasm(name));
        return new WagiRunner(_host).Handle(module, new WagiRequest { Method = "GET", Path = "/", Route = "/" }, new Dictionary<string, string>(), limits ?? new AppLimits());
    }

    [Fact]
    public void MemoryBomb_IsStoppedAtTheAppLimit_AndFailsWith500()
    {
        var outcome = Run("memory-bomb.wat", new AppLimits { MemoryMiB = 16 });

        Assert.Equal(500, outcome.Response.Status);
        Assert.Contains("unreachable", outcome.Error, StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public void DeepRecursion_OverflowsTheGuestStack_AndFailsWith500()
    {
        var outcome = Run("recursion.wat");

        Assert.Equal(500, outcome.Response.Status);
        Assert.Contains("stack", outcome.Error, StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public void OutputFlood_IsCutAtMaxResponseBytes_AndFailsWith500()
    {
        // The guest writes forever: were it not stopped at the cap, only the timeout would end it (a 504).
        var outcome = Run("flood.wat", new AppLimits { MaxResponseBytes = 1024 * 1024, TimeoutMs = 60_000 });

        Assert.Equal(500, outcome.Response.Status);
        Assert.Contains("maxResponseBytes", outcome.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task HealthyRequests_KeepSucceeding_WhileHostileGuestsRun()
    {
        using var hello = _host.Compile("hello", File.ReadAllBytes(Path.Combine(AppContext.BaseDirectory, "Modules", "hello.wasm")));
        var runner = new WagiRunner(_host);
        using var stop = new CancellationTokenSource();
        var hostile = Task.Run(() =>
        {
            var outcomes = new List<int>();
            foreach (var name in new[] { "loop.wat", "memory-bomb.wat", "recursion.wat", "unreachable.wat", "flood.wat" })
            {
                outcomes.Add(Run(name, new AppLimits { TimeoutMs = 300, MemoryMiB = 16, MaxResponseBytes = 1024 * 1024 }).Response.Status);
            }

            stop.Cancel();
            return outcomes;
        });

        var healthy = 0;
        var deadline = DateTime.UtcNow.AddMinutes(1);
        while (!stop.IsCancellationRequested && !hostile.IsCompleted && DateTime.UtcNow < deadline)
        {
            var outcome = runner.Handle(hello, new WagiRequest { Method = "GET", Path = "/hello", Route = "/hello" },
                new Dictionary<string, string> { ["OUTPOST_NODE_NAME"] = "n" }, new AppLimits());
            Assert.Equal(200, outcome.Response.Status);
            healthy++;
        }

        Assert.Equal([504, 500, 500, 500, 500], await hostile);
        Assert.True(healthy > 0, "no healthy request ran alongside the hostile ones"); // how many depends on the scheduler
    }

    [Fact]
    public void MemoryAboveThePoolCeiling_CannotGrow()
    {
        // The app asks for more than the node's pool allows: the pool wins.
        var outcome = Run("memory-bomb.wat", new AppLimits { MemoryMiB = 1024 });

        Assert.Equal(500, outcome.Response.Status);
    }

    public void Dispose() => _host.Dispose();
}

public sealed class AmbientAuthorityTests : IDisposable
{
    private readonly WasmHost _host = new(new WasmHostOptions { MaxInstances = 4 });

    [Fact]
    public void NoFilesNoPreopens_AndOnlyTheRequestEnvironment()
    {
        var wasm = Module.ConvertText(File.ReadAllText(Path.Combine(AppContext.BaseDirectory, "Modules", "ambient.wat")));
        using var module = _host.Compile("ambient", wasm);
        var request = new WagiRequest { Method = "GET", Path = "/a", Route = "/a" };

        var outcome = new WagiRunner(_host).Handle(module, request, new Dictionary<string, string> { ["GRANTED"] = "yes" }, new AppLimits());

        // 08 = EBADF for both: an app that mounts nothing has no descriptor 3 to open a path under.
        var body = Encoding.UTF8.GetString(outcome.Response.Body.Span);
        using var requestEnv = WagiRunner.RequestEnvironment(request);
        Assert.Equal($"open=08 env={requestEnv.Count + 1:D2} prestat=08", body);
        var names = Enumerable.Range(0, requestEnv.Count).Select(i => Encoding.UTF8.GetString(requestEnv[i]).Split('=')[0]).ToList();
        Assert.Contains("REMOTE_ADDR", names);
        Assert.DoesNotContain("PATH", names); // nothing of the host process leaks in
        Assert.DoesNotContain("HOME", names);
    }

    public void Dispose() => _host.Dispose();
}
