using System.Globalization;
using System.Net;
using System.Numerics;
using Microsoft.ML.OnnxRuntime;

namespace Outpost.IntegrationTests;

/// <summary>
/// Edge AI end to end: the sample AI app (samples/apps/classify, WASI-NN) with its model
/// (samples/ai/hadamard.onnx) applied with `outpost apply`, served by a real agent that has ONNX
/// Runtime, classifying as ONNX Runtime called directly does; a node without ONNX Runtime does
/// not get the app, and `outpost describe app` says why.
/// </summary>
[Trait("Category", "aot")]
public sealed class AiTests
{
    private static readonly uint[] Rows = [1, 3, 5, 6, 9, 10, 12, 15, 17, 18];

    private const string Manifest = """
        apiVersion: outpost.dev/v1
        kind: Application
        metadata: {name: classify}
        spec:
          module: {path: classify.wasm}
          triggers: {http: {route: /classify}}
          capabilities: [nn]
          models: [{name: hadamard, path: hadamard.onnx}]
        """;

    [Fact]
    public async Task SampleAiApp_ClassifiesAsOnnxRuntimeDoes_OnANodeWithIt_AndIsNotPlacedWhereThereIsNone()
    {
        await using var fleet = new Fleet();
        await fleet.StartServerAsync();
        var token = await fleet.CreateJoinTokenAsync();
        var (_, withAi) = await fleet.StartAgentAsync("edge-1", token);
        var (_, withoutAi) = await fleet.StartAgentAsync("edge-2", token, extra: ["--onnxruntime", "off"]);
        var model = Path.Combine(Repository.Root, "samples", "ai", "hadamard.onnx");
        var manifest = fleet.WriteManifest("classify.yaml", Manifest);
        File.Copy(Path.Combine(Repository.Root, "samples", "apps", "classify", "classify.wasm"), Path.Combine(Path.GetDirectoryName(manifest)!, "classify.wasm"));
        File.Copy(model, Path.Combine(Path.GetDirectoryName(manifest)!, "hadamard.onnx"));

        var (code, output) = await fleet.ClientAsync("apply", "-f", manifest);
        Assert.True(code == 0, output);

        await Eventually.UntilAsync(() => Fleet.GetAsync(withAi + "/classify?class=0"), r => r.Status == HttpStatusCode.OK, Fleet.Patience,
            "the classify app to answer on edge-1", r => $"{r.Status} {r.Body}");
        using var direct = new InferenceSession(model);
        for (var k = 0; k < 10; k++)
        {
            var (status, body) = await Fleet.GetAsync($"{withAi}/classify?class={k}");
            Assert.True(status == HttpStatusCode.OK, body);
            Assert.Contains($"argmax: {k} (expected {k})", body, StringComparison.Ordinal);
            var expected = Direct(direct, k);
            var printed = body.Split('\n').Where(l => l.StartsWith("class ", StringComparison.Ordinal))
                .Select(l => float.Parse(l.Split(": ")[1], CultureInfo.InvariantCulture)).ToArray();
            Assert.Equal(10, printed.Length);
            for (var c = 0; c < 10; c++)
            {
                Assert.True(Math.Abs(printed[c] - expected[c]) <= 1e-6, $"class {k}: score {c} is {printed[c]} through the app, {expected[c]} from ONNX Runtime");
            }
        }

        // edge-2 said it has no ONNX Runtime: the app is not placed there, and describe says why.
        var node = await fleet.ApiGetAsync("/api/v1/nodes/edge-2");
        Assert.Equal("unavailable", (string?)node["status"]!["ai"]);
        Assert.Contains("turned off", (string?)node["status"]!["aiProblem"], StringComparison.Ordinal);
        Assert.Equal("available", (string?)(await fleet.ApiGetAsync("/api/v1/nodes/edge-1"))["status"]!["ai"]);
        Assert.Equal(HttpStatusCode.NotFound, (await Fleet.GetAsync(withoutAi + "/classify")).Status);
        (code, output) = await fleet.ClientAsync("describe", "app", "classify");
        Assert.True(code == 0, output);
        Assert.Contains("node edge-2 has no ONNX Runtime for inference (ai: unavailable): ONNX Runtime is turned off on this node", output, StringComparison.Ordinal);
        var app = await fleet.ApiGetAsync("/apis/outpost.dev/v1/applications/classify");
        Assert.Equal(1, (int?)app["status"]!["targetedNodes"]);
        await Eventually.UntilAsync(() => fleet.ApiGetAsync("/apis/outpost.dev/v1/applications/classify"), a => (int?)a["status"]!["readyNodes"] == 1, Fleet.Patience,
            "classify to be ready on its one node", a => a["status"]!.ToJsonString());
    }

    [Fact]
    public async Task AModelThatIsNotOnnx_OrIsTruncated_IsRefusedAtApply_NamingTheFile()
    {
        await using var fleet = new Fleet();
        await fleet.StartServerAsync();
        var manifest = fleet.WriteManifest("classify.yaml", Manifest);
        var dir = Path.GetDirectoryName(manifest)!;
        File.Copy(Path.Combine(Repository.Root, "samples", "apps", "classify", "classify.wasm"), Path.Combine(dir, "classify.wasm"));
        var model = File.ReadAllBytes(Path.Combine(Repository.Root, "samples", "ai", "hadamard.onnx"));

        File.WriteAllBytes(Path.Combine(dir, "hadamard.onnx"), model[..(model.Length / 3)]);
        var (code, output) = await fleet.ClientAsync("apply", "-f", manifest);
        Assert.NotEqual(0, code);
        Assert.Contains("spec.models[0].path: hadamard.onnx", output, StringComparison.Ordinal);
        Assert.Contains("truncated", output, StringComparison.Ordinal);

        File.WriteAllText(Path.Combine(dir, "hadamard.onnx"), "name,value\nnot,a model\n");
        (code, output) = await fleet.ClientAsync("apply", "-f", manifest);
        Assert.NotEqual(0, code);
        Assert.Contains("spec.models[0].path: hadamard.onnx", output, StringComparison.Ordinal);
        Assert.Contains("not an ONNX model", output, StringComparison.Ordinal);

        // Nothing was half-applied: the app does not exist.
        using var request = new HttpRequestMessage(HttpMethod.Get, fleet.ServerUrl + "/apis/outpost.dev/v1/applications/classify");
        using var response = await fleet.ApiSendAsync(request);
        Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
    }

    private static float[] Direct(InferenceSession session, int k)
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
}
