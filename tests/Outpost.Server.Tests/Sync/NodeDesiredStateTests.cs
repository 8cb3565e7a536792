using System.Text.Json.Nodes;
using Outpost.Core.Resources;
using Outpost.Server.Sync;

namespace Outpost.Server.Tests.Sync;

public sealed class NodeDesiredStateTests
{
    private static StoredResource Node(string? status) => new()
    {
        Kind = ResourceKind.Node.Kind,
        Name = "edge-1",
        Uid = "u",
        ResourceVersion = 1,
        Generation = 1,
        CreationTimestamp = DateTimeOffset.UnixEpoch,
        StatusJson = status,
    };

    [Theory]
    [InlineData("""{"runtimes":["wasm","runc"]}""", "runc", true)]
    [InlineData("""{"usage":{"cpu":1},"apps":{"a":{"state":"Ready"}},"runtimes":["wasm","onnx"],"outbox":{}}""", "onnx", true)]
    [InlineData("""{"runtimes":["wasm"],"containerRuntimeProblem":"runc was not found on PATH"}""", "runc", false)]
    [InlineData("""{"apps":{"runtimes":["runc"]}}""", "runc", false)] // only the top-level list counts
    [InlineData("""{"runtimes":[{"name":"runc"},"wasm"]}""", "runc", false)]
    [InlineData("""{"runtimes":"runc"}""", "runc", false)]
    [InlineData("""{"runtimes":["runcx"]}""", "runc", false)]
    [InlineData("""{"runtimes":["ru""", "runc", false)] // cut short
    [InlineData("""{}""", "runc", false)]
    [InlineData(null, "runc", false)]
    public void NodeHasRuntime_ReadsTheTopLevelList(string? status, string runtime, bool listed) =>
        Assert.Equal(listed, NodeDesiredState.NodeHasRuntime(Node(status), runtime));

    [Fact]
    public void NotPlacedBecause_SaysWhyFromTheStatus_AndNothingForAWasmApp()
    {
        var container = ApplicationSpec.FromJson(JsonNode.Parse("""{"image":"hello:1","imageDigest":"sha256:00"}""")!.AsObject());
        var wasm = ApplicationSpec.FromJson(JsonNode.Parse("""{"module":{"digest":"sha256:00"}}""")!.AsObject());
        var without = Node("""{"runtimes":["wasm"],"containerRuntimeProblem":"runc was not found on PATH"}""");
        var with = Node("""{"runtimes":["wasm","runc"]}""");

        Assert.Equal("runs no containers: runc was not found on PATH", NodeDesiredState.NotPlacedBecause(container, without));
        Assert.Equal("runs no containers: it has not said it can", NodeDesiredState.NotPlacedBecause(container, Node(null)));
        Assert.Null(NodeDesiredState.NotPlacedBecause(container, with));
        Assert.Null(NodeDesiredState.NotPlacedBecause(wasm, without));
        Assert.Null(NodeDesiredState.NotPlacedBecause(wasm, Node("not json"))); // a Wasm app never reads the status
        Assert.True(NodeDesiredState.Places(container, with));
        Assert.False(NodeDesiredState.Places(container, without));
    }
}
