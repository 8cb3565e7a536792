using System.Diagnostics;
using System.Globalization;
using Outpost.Core.Resources;
using Outpost.Wasm.Components;
using Outpost.Wasm.Hosting;
using Outpost.Wasm.Wagi;

namespace Outpost.Bench;

/// <summary>
/// Per-request cost of a fresh component instance for samples/components/http-c (a small
/// wasi:http/proxy hello), in-process as coldstart measures core modules: the request made into
/// wasi:http resources, instantiated, handle called, the response read back. Baseline from the
/// same run: hello.wasm, a core module, through WAGI.
/// </summary>
internal static class ComponentBench
{
    public static void Run(string component, TimeSpan warmup, int iterations)
    {
        var bytes = File.ReadAllBytes(component);
        using var host = new WasmHost();
        using var compiled = host.Components.Load("http-c", Digest.Compute(bytes), () => bytes);
        var runner = new ComponentRunner(host.Components);
        var request = new WagiRequest { Method = "GET", Path = "/hello", Route = "/hello", Headers = [new("Host", "127.0.0.1"), new("Accept", "*/*")] };
        var limits = new AppLimits();
        var env = new List<KeyValuePair<string, string>> { new("OUTPOST_NODE_NAME", "edge-1") };
        var fresh = ColdStart.Measure(warmup, iterations, () => Check(runner.Handle(compiled, request, limits, null, env)));

        var body = request with { Query = "size=65536" };
        var body64k = ColdStart.Measure(warmup, Math.Max(iterations / 10, 100), () => Check(runner.Handle(compiled, body, limits, null, env)));

        var wasm = File.ReadAllBytes(Path.Combine(AppContext.BaseDirectory, "hello.wasm"));
        using var module = host.Compile("hello", wasm);
        var wagi = new WagiRunner(host);
        var coreEnv = new Dictionary<string, string> { ["OUTPOST_NODE_NAME"] = "edge-1", ["GREETING"] = "hello" };
        var core = ColdStart.Measure(warmup, iterations, () => Check(wagi.Handle(module, request, coreEnv, limits)));

        Console.WriteLine($"iterations={iterations} after {warmup.TotalSeconds:F0} s warm-up each");
        Console.WriteLine($"fresh component instance (http-c hello): p50 {fresh.P50:F1} us  p99 {fresh.P99:F1} us");
        Console.WriteLine($"  with a 64 KB body:                     p50 {body64k.P50:F1} us  p99 {body64k.P99:F1} us");
        Console.WriteLine($"fresh core instance (hello.wasm, WAGI):  p50 {core.P50:F1} us  p99 {core.P99:F1} us");
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"components-inproc p50_us={fresh.P50:F1} p99_us={fresh.P99:F1} body64k_p50_us={body64k.P50:F1} core_p50_us={core.P50:F1} core_p99_us={core.P99:F1}"));
    }

    private static void Check(WagiOutcome outcome)
    {
        if (outcome.Response.Status != 200)
        {
            throw new InvalidOperationException($"answered {outcome.Response.Status}: {outcome.Error}");
        }
    }
}
