using System.Text.Json.Nodes;
using Outpost.Core.Resources;

namespace Outpost.Core.Tests.Resources;

public sealed class SpecChangesTests
{
    private static JsonObject Spec(string json) => JsonNode.Parse(json)!.AsObject();

    [Fact]
    public void Between_NamesTheChangedPaths_FollowingMapsButNotTheModule()
    {
        var older = Spec("""{"module":{"digest":"sha256:a"},"env":{"GREETING":"one","MODE":"x"},"triggers":{"http":{"route":"/hello"}},"rollout":{"steps":[{"percent":25}]}}""");
        var newer = Spec("""{"module":{"digest":"sha256:b"},"env":{"GREETING":"two","MODE":"x","NEW":"y"},"triggers":{"http":{"route":"/hello"}},"rollout":{"steps":[{"percent":50}]}}""");

        Assert.Equal(["env.GREETING", "env.NEW", "module", "rollout.steps"], SpecChanges.Between(older, newer));
        Assert.Equal(["env"], SpecChanges.Between(Spec("""{"env":{"A":"b"}}"""), Spec("{}"))); // a whole section removed
        Assert.Empty(SpecChanges.Between(older, older.DeepClone().AsObject()));
    }
}
