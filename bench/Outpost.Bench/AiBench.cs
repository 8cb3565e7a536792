using System.Diagnostics;
using System.Globalization;
using System.Numerics;
using System.Text;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Microsoft.ML.OnnxRuntime;
using Outpost.Core.Resources;
using Outpost.Wasm.Hosting;
using Outpost.Wasm.Nn;
using Outpost.Wasm.Wasi;

namespace Outpost.Bench;

/// <summary>
/// The in-process figures of bench/run.sh ai: one inference of the sample model through the
/// classify guest (a fresh instance per request, WASI-NN, the node's cached session) against the
/// same model and input called directly through ONNX Runtime from .NET; and reading a 1 MB
/// mounted file in a request against copying 1 MB the guest already holds. Also the Kestrel
/// baseline of the HTTP figure: the same classification served natively.
/// </summary>
internal static class AiBench
{
    private static readonly uint[] Rows = [1, 3, 5, 6, 9, 10, 12, 15, 17, 18];

    public static int Run(string model, string classifyWasm, string readWasm, int iterations)
    {
        var library = OnnxRuntimeLibrary.Load();
        if (!library.Available)
        {
            Console.Error.WriteLine($"bench ai: {library.Problem}");
            return 1;
        }

        // Native: the session the node would make (one thread per inference), the input built each time.
        using var native = NewSession(File.ReadAllBytes(model));
        var nativeTimes = Measure(iterations, k => Classify(native, k));

        using var sessions = new NnSessions(library.Path);
        using var host = new WasmHost(new WasmHostOptions { MaxInstances = 8, Models = sessions });
        using var classify = host.Compile("classify", File.ReadAllBytes(classifyWasm), new HashSet<string>(StringComparer.Ordinal) { "nn" });
        var models = new Dictionary<string, NnModel>(StringComparer.Ordinal) { ["hadamard"] = new NnModel(Digest.Compute(File.ReadAllBytes(model)), () => File.ReadAllBytes(model)) };
        var wasmTimes = Measure(iterations, k =>
        {
            using var output = new MemoryStream();
            var result = WasiCommand.Run(host, classify, new WasiCommandOptions { Args = ["classify.wasm", "hadamard", k.ToString(CultureInfo.InvariantCulture)], Stdout = output, Models = models });
            if (result.ExitCode != 0)
            {
                throw new InvalidOperationException($"classify {k} exited {result.ExitCode}: {result.Error} {string.Join("; ", result.Notes)}");
            }
        });

        // Files: 1 MB from a mounted file, against 1 MB already in the guest's memory.
        var dir = Directory.CreateTempSubdirectory("outpost-bench-files-").FullName;
        try
        {
            var bytes = new byte[1024 * 1024];
            new Random(7).NextBytes(bytes);
            File.WriteAllBytes(Path.Combine(dir, "blob.bin"), bytes);
            using var mounts = WasiMounts.Open([new WasiMount("/assets", dir, ReadOnly: true)]);
            using var reader = host.Compile("readfile", File.ReadAllBytes(readWasm));
            void Read(string[] args)
            {
                using var output = new MemoryStream();
                var result = WasiCommand.Run(host, reader, new WasiCommandOptions { Args = ["readfile.wasm", .. args], Stdout = output, Mounts = mounts });
                if (result.ExitCode != 0)
                {
                    throw new InvalidOperationException($"readfile {string.Join(' ', args)} exited {result.ExitCode}: {result.Error}");
                }
            }

            var fileTimes = Measure(iterations, _ => Read(["file", "/assets/blob.bin"]));
            var memoryTimes = Measure(iterations, _ => Read(["memory"]));

            var native50 = Median(nativeTimes);
            var wasm50 = Median(wasmTimes);
            Console.WriteLine(FormattableString.Invariant($"inference: native p50 {native50:F3} ms, through the guest p50 {wasm50:F3} ms ({iterations} each, ONNX Runtime {library.Version}, {sessions.Created} session)"));
            Console.WriteLine(FormattableString.Invariant($"1 MB read: mounted file p50 {Median(fileTimes):F3} ms, in guest memory p50 {Median(memoryTimes):F3} ms"));
            Console.WriteLine(FormattableString.Invariant(
                $"aiproc native_p50_ms={native50:F3} wasm_p50_ms={wasm50:F3} ratio={wasm50 / native50:F3} file_p50_ms={Median(fileTimes):F3} memory_p50_ms={Median(memoryTimes):F3} file_read_ratio={Median(fileTimes) / Median(memoryTimes):F2}"));
            return 0;
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>GET /classify?class=K answered natively: what the sample app does, without Wasm.</summary>
    public static async Task ServeAsync(int port, string model)
    {
        if (OnnxRuntimeLibrary.Load() is { Available: false } library)
        {
            throw new InvalidOperationException(library.Problem);
        }

        using var session = NewSession(File.ReadAllBytes(model));
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseUrls($"http://127.0.0.1:{port}");
        await using var app = builder.Build();
        app.MapGet("/classify", (HttpContext context) =>
        {
            var k = int.TryParse(context.Request.Query["class"], CultureInfo.InvariantCulture, out var c) && c is >= 0 and < 10 ? c : 3;
            var scores = Classify(session, k);
            var text = new StringBuilder();
            var best = 0;
            for (var i = 0; i < scores.Length; i++)
            {
                text.Append(CultureInfo.InvariantCulture, $"class {i}: {scores[i]:F6}\n");
                best = scores[i] > scores[best] ? i : best;
            }

            text.Append(CultureInfo.InvariantCulture, $"argmax: {best} (expected {k})\n");
            return Results.Text(text.ToString(), "text/plain");
        });
        await app.RunAsync();
    }

    private static InferenceSession NewSession(byte[] model)
    {
        using var options = new Microsoft.ML.OnnxRuntime.SessionOptions { IntraOpNumThreads = 1, InterOpNumThreads = 1, GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL };
        return new InferenceSession(model, options);
    }

    private static float[] Classify(InferenceSession session, int k)
    {
        var input = new float[1024];
        for (var i = 0; i < input.Length; i++)
        {
            input[i] = (BitOperations.PopCount(Rows[k] & (uint)i) & 1) == 1 ? -1f : 1f;
        }

        using var value = OrtValue.CreateTensorValueFromMemory(input, [1, 1024]);
        using var options = new RunOptions();
        using var outputs = session.Run(options, ["input"], [value], ["probs"]);
        return outputs[0].GetTensorDataAsSpan<float>().ToArray();
    }

    /// <summary>Milliseconds per call, after a warm-up of a tenth as many; k cycles over the ten classes.</summary>
    private static double[] Measure(int iterations, Action<int> action)
    {
        for (var i = 0; i < Math.Max(20, iterations / 10); i++)
        {
            action(i % 10);
        }

        var times = new double[iterations];
        for (var i = 0; i < iterations; i++)
        {
            var start = Stopwatch.GetTimestamp();
            action(i % 10);
            times[i] = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
        }

        return times;
    }

    private static double Median(double[] values)
    {
        var sorted = values.Order().ToArray();
        return sorted[sorted.Length / 2];
    }
}
