using System.Diagnostics;
using Outpost.Core.Resources;
using Outpost.Wasm.Hosting;
using Outpost.Wasm.Wagi;

namespace Outpost.Bench;

/// <summary>
/// Per-request cost of a fresh instance: build the WAGI request, instantiate hello.wasm,
/// run it, parse its response. Baselines from the same run: the same work without the
/// instance (what the host adds), and the same engine without the pooling allocator.
/// </summary>
internal static class ColdStart
{
    public static void Run(TimeSpan warmup, int iterations)
    {
        var wasm = File.ReadAllBytes(Path.Combine(AppContext.BaseDirectory, "hello.wasm"));
        var env = new Dictionary<string, string> { ["OUTPOST_NODE_NAME"] = "edge-1", ["GREETING"] = "hello" };
        var request = new WagiRequest { Method = "GET", Path = "/hello", Route = "/hello", Headers = [new("Host", "127.0.0.1"), new("Accept", "*/*")] };
        var limits = new AppLimits();
        var appEnv = new AppEnvironment(env);
        var canned = "Content-Type: text/plain; charset=utf-8\nStatus: 200\n\nhello from edge-1 (path /)\n"u8.ToArray();

        using var pooled = new WasmHost();
        using var pooledModule = pooled.Compile("hello", wasm);
        var pooledRunner = new WagiRunner(pooled);
        var withInstance = Measure(warmup, iterations, () => Check(pooledRunner.Handle(pooledModule, request, appEnv, limits)));

        // Everything but the instance: environment, request context and response parsing.
        var noInstance = Measure(warmup, iterations, () =>
        {
            using var context = WagiRunner.CreateContext(request, appEnv, limits);
            context.Stdout.Write(canned);
            Check(WagiRunner.Parse(context.CapturedStdout.WrittenMemory, 0, null));
        });

        using var unpooled = new WasmHost(new WasmHostOptions { UsePooling = false });
        using var unpooledModule = unpooled.Compile("hello", wasm);
        var unpooledRunner = new WagiRunner(unpooled);
        var withoutPool = Measure(warmup, iterations, () => Check(unpooledRunner.Handle(unpooledModule, request, appEnv, limits)));

        Console.WriteLine($"iterations={iterations} per variant after {warmup.TotalSeconds:F0} s warm-up each");
        Console.WriteLine($"fresh pooled instance:   p50 {withInstance.P50:F1} us  p99 {withInstance.P99:F1} us  {withInstance.BytesPerCall} B allocated");
        Console.WriteLine($"host work, no instance:  p50 {noInstance.P50:F1} us  p99 {noInstance.P99:F1} us  {noInstance.BytesPerCall} B allocated");
        Console.WriteLine($"fresh unpooled instance: p50 {withoutPool.P50:F1} us  p99 {withoutPool.P99:F1} us");
        Console.WriteLine(FormattableString.Invariant(
            $"coldstart p50_us={withInstance.P50:F1} p99_us={withInstance.P99:F1} alloc_bytes={withInstance.BytesPerCall} baseline_noinst_p50_us={noInstance.P50:F1} nopool_p50_us={withoutPool.P50:F1} nopool_ratio={withoutPool.P50 / withInstance.P50:F2}"));
    }

    private static void Check(WagiOutcome outcome)
    {
        if (outcome.Response.Status != 200)
        {
            throw new InvalidOperationException($"hello answered {outcome.Response.Status}: {outcome.Error}");
        }
    }

    /// <summary>Median and p99 in microseconds, and the bytes the measured thread allocated per call.</summary>
    internal static (double P50, double P99, long BytesPerCall) Measure(TimeSpan warmup, int iterations, Action action)
    {
        var until = Stopwatch.GetTimestamp() + (long)(warmup.TotalSeconds * Stopwatch.Frequency);
        while (Stopwatch.GetTimestamp() < until)
        {
            action();
        }

        var samples = new double[iterations];
        var allocated = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < iterations; i++)
        {
            var start = Stopwatch.GetTimestamp();
            action();
            samples[i] = Stopwatch.GetElapsedTime(start).TotalMicroseconds;
        }

        allocated = GC.GetAllocatedBytesForCurrentThread() - allocated;
        Array.Sort(samples);
        return (samples[iterations / 2], samples[(int)(iterations * 0.99)], allocated / iterations);
    }
}
