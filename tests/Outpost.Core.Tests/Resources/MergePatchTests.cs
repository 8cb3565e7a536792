using System.Text.Json.Nodes;
using Outpost.Core.Api;
using Outpost.Core.Resources;

namespace Outpost.Core.Tests.Resources;

public sealed class MergePatchTests
{
    [Fact]
    public void Apply_FollowsRfc7386()
    {
        var target = JsonNode.Parse("""{"a":"b","c":{"d":"e","f":"g"}}""");
        var patch = JsonNode.Parse("""{"a":"z","c":{"f":null}}""");

        Assert.Equal("""{"a":"z","c":{"d":"e"}}""", MergePatch.Apply(target, patch)!.ToJsonString());
    }

    [Fact]
    public void Canonical_SortsKeysSoEqualSpecsCompareEqual() =>
        Assert.Equal(JsonCanonical.Serialize(JsonNode.Parse("""{"b":1,"a":{"d":2,"c":3}}""")),
            JsonCanonical.Serialize(JsonNode.Parse("""{"a":{"c":3,"d":2},"b":1}""")));

    [Theory]
    [InlineData(true, 5, "Ready")]
    [InlineData(false, 5, "NotReady")]
    [InlineData(true, 20, "NotReady")]
    [InlineData(true, 61, "NotReady")]
    [InlineData(false, 20, "Offline")]
    public void NodeState_FollowsTheLease(bool connected, int secondsSinceBeat, string expected)
    {
        var now = DateTimeOffset.UnixEpoch.AddDays(1);

        Assert.Equal(expected, NodeState.Derive(connected, now.AddSeconds(-secondsSinceBeat), now, TimeSpan.FromSeconds(15)));
    }

    [Fact]
    public void Status_CarriesCausesWithFields()
    {
        var status = ApiStatus.Invalid("Application", "x", [new StatusCause("spec.module", "required")]).ToJson();

        Assert.Equal(422, (int)status["code"]!);
        Assert.Equal("spec.module", (string?)status["details"]!["causes"]![0]!["field"]);
        Assert.Contains("spec.module: required", (string?)status["message"], StringComparison.Ordinal);
    }
}
