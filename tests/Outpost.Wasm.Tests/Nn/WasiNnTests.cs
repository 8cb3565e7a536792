using System.Globalization;
using System.Text;
using Microsoft.ML.OnnxRuntime;
using Outpost.Core.Resources;
using Outpost.Wasm.Hosting;
using Outpost.Wasm.Nn;
using Outpost.Wasm.Tests.Wasi;
using Outpost.Wasm.Wasi;

namespace Outpost.Wasm.Tests.Nn;

/// <summary>
/// WASI-NN on ONNX Runtime: the sample AI app (samples/ai/classify.c) classifies as ONNX Runtime
/// called directly does; tensors of every witx type go in and out; bad calls fail with the spec's
/// nn_errno and a reason for the log; one session per model is shared by every request.
/// </summary>
public sealed class WasiNnTests(WasiPrograms programs) : IClassFixture<WasiPrograms>, IDisposable
{
    private static readonly string ModelPath = Path.Combine(AppContext.BaseDirectory, "Modules", "hadamard.onnx");
    private static readonly uint[] Rows = [1, 3, 5, 6, 9, 10, 12, 15, 17, 18];

    private readonly NnSessions _sessions = new();

    private static OnnxRuntimeStatus Runtime => OnnxRuntimeLibrary.Load();

    private WasmHost NewHost() => new(new WasmHostOptions { MaxInstances = 8, Models = _sessions });

    private static Dictionary<string, NnModel> Models(params (string Name, string Path)[] models) =>
        models.ToDictionary(m => m.Name, m => new NnModel(Digest.Compute(File.ReadAllBytes(m.Path)), () => File.ReadAllBytes(m.Path)), StringComparer.Ordinal);

    private static (WasiCommandResult Result, string Stdout, IReadOnlyList<string> Notes) Run(WasmHost host, WasmModule module, IReadOnlyDictionary<string, NnModel> models, params string[] args)
    {
        using var output = new MemoryStream();
        var result = WasiCommand.Run(host, module, new WasiCommandOptions { Args = ["guest.wasm", .. args], Stdout = output, Models = models });
        return (result, Encoding.UTF8.GetString(output.ToArray()), result.Notes);
    }

    private static void RequireRuntime()
    {
        if (!Runtime.Available)
        {
            Assert.False(Environment.GetEnvironmentVariable("CI") == "true", Runtime.Problem);
            Skip.If(true, Runtime.Problem);
        }
    }

    [SkippableFact]
    public void SampleApp_ClassifiesEveryClass_AsOnnxRuntimeCalledDirectly()
    {
        RequireRuntime();
        using var host = NewHost();
        using var module = host.Compile("classify", File.ReadAllBytes(Path.Combine(AppContext.BaseDirectory, "Modules", "classify.wasm")), Capabilities("nn"));
        using var direct = new InferenceSession(ModelPath);
        var models = Models(("hadamard", ModelPath));
        for (var k = 0; k < 10; k++)
        {
            var (result, stdout, _) = Run(host, module, models, "hadamard", k.ToString(CultureInfo.InvariantCulture));
            Assert.True(result.ExitCode == 0, stdout + result.Error);
            Assert.Contains($"argmax: {k} (expected {k})", stdout, StringComparison.Ordinal);

            var input = new float[1024];
            for (var i = 0; i < input.Length; i++)
            {
                input[i] = (System.Numerics.BitOperations.PopCount(Rows[k] & (uint)i) & 1) == 1 ? -1f : 1f;
            }

            using var value = OrtValue.CreateTensorValueFromMemory(input, [1, 1024]);
            using var outputs = direct.Run(new RunOptions(), ["input"], [value], ["probs"]);
            var expected = outputs[0].GetTensorDataAsSpan<float>().ToArray();
            var printed = stdout.Split('\n').Where(l => l.StartsWith("class ", StringComparison.Ordinal))
                .Select(l => float.Parse(l.Split(": ")[1], CultureInfo.InvariantCulture)).ToArray();
            Assert.Equal(10, printed.Length);
            for (var c = 0; c < 10; c++)
            {
                Assert.True(Math.Abs(printed[c] - expected[c]) <= 1e-6, $"class {k}: score {c} printed {printed[c]}, ONNX Runtime gives {expected[c]}");
            }
        }

        Assert.Equal(1, _sessions.Created); // one session for ten requests, each a fresh instance
    }

    [SkippableTheory]
    [InlineData("f16", "0x4000 0x4400 0x4600 0x4800 0x4900 0x4a00")]
    [InlineData("f32", "2 4 6 8 10 12")]
    [InlineData("f64", "2 4 6 8 10 12")]
    [InlineData("u8", "2 4 6 8 10 12")]
    [InlineData("i32", "2 4 6 8 10 12")]
    [InlineData("i64", "2 4 6 8 10 12")]
    public void EveryWitxTensorType_GoesInAndComesOut(string type, string expected)
    {
        RequireRuntime();
        programs.Require(node: false);
        using var host = NewHost();
        using var module = host.Compile("nntypes", programs.Bytes("nntypes"), Capabilities("nn"));
        var models = Models(("add", Path.Combine(AppContext.BaseDirectory, "Modules", "nn", $"add_{type}.onnx")));

        var (result, stdout, _) = Run(host, module, models, type, "2");
        Assert.True(result.ExitCode == 0, stdout + result.Error);
        Assert.Equal($"{type} [2, 3] -> {6 * Size(type)} bytes: {expected}\n", stdout);

        // The model leaves its first dimension open: another batch size is fine too.
        (result, stdout, _) = Run(host, module, models, type, "5");
        Assert.True(result.ExitCode == 0, stdout + result.Error);
        Assert.StartsWith($"{type} [5, 3] -> {15 * Size(type)} bytes:", stdout, StringComparison.Ordinal);
    }

    [SkippableFact]
    public void BadCalls_FailWithTheSpecsErrno_AndAReason_AndTheRunCarriesOn()
    {
        RequireRuntime();
        programs.Require(node: false);
        using var host = NewHost();
        using var module = host.Compile("nnbad", programs.Bytes("nnbad"), Capabilities("nn"));
        var (result, body, context) = Run(host, module, Models(("hadamard", ModelPath)));
        Assert.Equal(0, result.ExitCode);

        string[] expected =
        [
            "load_by_name undeclared: errno 8", // not_found
            "load of bytes that are not ONNX: errno 2", // invalid_encoding
            "load as TensorFlow: errno 2",
            "load for a GPU: errno 6", // unsupported_operation
            "load_by_name hadamard: errno 0",
            "init_execution_context of graph 99: errno 1", // invalid_argument
            "init_execution_context: errno 0",
            "compute before set_input: errno 1",
            "set_input of shape [1, 1000]: errno 1",
            "set_input of type i32: errno 1",
            "set_input with 100 bytes of data: errno 1",
            "set_input with data outside memory: errno 1",
            "set_input with the tensor outside memory: errno 1",
            "set_input of input 1: errno 1",
            "set_input: errno 0",
            "compute: errno 0",
            "get_output into 16 bytes: errno 7", // too_large
            "get_output of output 3: errno 1",
            "get_output outside memory: errno 1",
            "good: errno 0, 40 bytes, argmax 2",
        ];
        Assert.Equal(string.Join('\n', expected) + "\n", body);
        Assert.Contains(context, n => n.Contains("declares no model 'nosuch' (spec.models: hadamard)", StringComparison.Ordinal));
        Assert.Contains(context, n => n.Contains("input 'input' has shape [1, 1024], the tensor [1, 1000]", StringComparison.Ordinal));
        Assert.Contains(context, n => n.Contains("input 'input' takes f32, the tensor is i32", StringComparison.Ordinal));
        Assert.Contains(context, n => n.Contains("output 0 is 40 bytes, the buffer 16", StringComparison.Ordinal));
    }

    [SkippableFact]
    public void Inference_IsStoppedAtTheAppsTimeLimit()
    {
        RequireRuntime();
        using var host = NewHost();
        using var module = host.Compile("classify", File.ReadAllBytes(Path.Combine(AppContext.BaseDirectory, "Modules", "classify.wasm")), Capabilities("nn"));
        var model = SlowModel.Build(1500);
        var models = new Dictionary<string, NnModel>(StringComparer.Ordinal) { ["slow"] = new NnModel(Digest.Compute(model), () => model) };
        WasiCommandResult Classify(int timeoutMs) => WasiCommand.Run(host, module, new WasiCommandOptions
        {
            Args = ["classify.wasm", "slow", "0"],
            Models = models,
            Limits = new AppLimits { TimeoutMs = timeoutMs },
        });

        // Without a tight limit the inference runs to its end (its output is too large for the
        // classify guest's buffer, which says so: it ran). The first run also makes the session.
        var first = Classify(120_000);
        Assert.False(first.TimedOut, first.Error);
        Assert.Contains(first.Notes, n => n.Contains("get_output: output 0 is 4096 bytes, the buffer 40", StringComparison.Ordinal));
        // The whole inference's time: the faster of two runs, so a run slowed by a busy machine
        // does not stretch the limit below past what an unhurried run needs.
        var full = TimeSpan.MaxValue;
        for (var run = 0; run < 2; run++)
        {
            var clock = System.Diagnostics.Stopwatch.StartNew();
            Assert.False(Classify(120_000).TimedOut);
            full = TimeSpan.FromTicks(Math.Min(full.Ticks, clock.Elapsed.Ticks));
        }

        // With a tenth of that as its limit, ONNX Runtime is told to stop and the run ends as a timeout.
        var limitedClock = System.Diagnostics.Stopwatch.StartNew();
        var limited = Classify((int)Math.Max(20, full.TotalMilliseconds / 10));
        var stopped = limitedClock.Elapsed;
        Assert.True(limited.TimedOut, limited.Error);
        Assert.True(stopped < full * 0.75, $"stopped after {stopped.TotalMilliseconds:F0} ms; the whole inference takes {full.TotalMilliseconds:F0} ms");
    }

    [SkippableFact]
    public void TheImports_NeedCapabilityNn_AndANodeWithOnnxRuntime()
    {
        RequireRuntime();
        var wasm = File.ReadAllBytes(Path.Combine(AppContext.BaseDirectory, "Modules", "classify.wasm"));
        using var host = NewHost();
        var ungranted = Assert.Throws<ModuleRejectedException>(() => host.Compile("classify", wasm, Capabilities("log")));
        Assert.Contains("import 'wasi_ephemeral_nn.load' (WASI-NN) needs capability 'nn'", ungranted.Message, StringComparison.Ordinal);

        using var without = new WasmHost(new WasmHostOptions { MaxInstances = 2 });
        var noRuntime = Assert.Throws<ModuleRejectedException>(() => without.Compile("classify", wasm, Capabilities("nn")));
        Assert.Contains("this node has no ONNX Runtime (ai: unavailable)", noRuntime.Message, StringComparison.Ordinal);
        Assert.Empty(without.Validate(wasm)); // the server (no ONNX Runtime needed) still accepts the module
    }

    private static int Size(string type) => type switch { "f16" => 2, "u8" => 1, "f32" or "i32" => 4, _ => 8 };

    private static HashSet<string> Capabilities(params string[] names) => new(names, StringComparer.Ordinal);

    public void Dispose() => _sessions.Dispose();
}
