using System.Text.Json.Nodes;
using Outpost.Core.Resources;

namespace Outpost.Core.Tests.Resources;

public sealed class ServerSideApplyTests
{
    [Fact]
    public void AManagersDroppedFieldsGo_OtherWritersFieldsStay()
    {
        var first = JsonNode.Parse("""{"kind":"Application","metadata":{"name":"a"},"spec":{"env":{"A":"1","B":"2"},"triggers":{"http":{"route":"/a"}}}}""")!.AsObject();
        var created = ServerSideApply.Patch(null, first, "kubectl");
        Assert.Equal(first.ToJsonString(), (string)created["metadata"]!["annotations"]!["outpost.dev/applied.kubectl"]!);

        // Someone else labels it; the manager then applies without env.B and without triggers.
        var current = (JsonObject)created.DeepClone();
        current["metadata"]!["labels"] = new JsonObject { ["tier"] = "web" };
        var second = JsonNode.Parse("""{"kind":"Application","metadata":{"name":"a"},"spec":{"env":{"A":"1"}}}""")!.AsObject();
        var patch = ServerSideApply.Patch(current, second, "kubectl");
        var result = (JsonObject)MergePatch.Apply(current, patch)!;

        Assert.Equal("""{"A":"1"}""", result["spec"]!["env"]!.ToJsonString());
        Assert.Null(result["spec"]!["triggers"]);
        Assert.Equal("web", (string)result["metadata"]!["labels"]!["tier"]!);
        Assert.Equal(second.ToJsonString(), (string)result["metadata"]!["annotations"]!["outpost.dev/applied.kubectl"]!);
        // Another manager's configuration is its own.
        Assert.True(ServerSideApply.Patch(result, second, "ci/pipeline 1")["metadata"]!["annotations"]!.AsObject().ContainsKey("outpost.dev/applied.ci-pipeline-1"));
    }
}
