using Outpost.Core.Resources;

namespace Outpost.Core.Tests.Resources;

public sealed class ResourceKindTests
{
    [Fact]
    public void EveryUserName_ResolvesToAKind()
    {
        Assert.All(ResourceKind.UserNames, name => Assert.NotNull(ResourceKind.FindByUserName(name)));
        Assert.Equal(ResourceKind.UserNames.Count, ResourceKind.UserNames.Select(ResourceKind.FindByUserName).Distinct().Count());
    }

    [Theory]
    [InlineData("nods", "nodes")]
    [InlineData("NODS", "nodes")]
    [InlineData("runtimeclass", null)] // resolves by itself; not a miss
    [InlineData("runtime", "runtimeclasses")]
    [InlineData("alertrule", null)]
    [InlineData("alrts", "alerts")]
    [InlineData("evnets", "events")]
    [InlineData("deployments", null)]
    [InlineData("x", null)]
    public void Suggest_NamesTheNearestKind_OrNothing(string typed, string? expected)
    {
        if (ResourceKind.FindByUserName(typed) is not null)
        {
            Assert.Null(expected);
            return;
        }

        Assert.Equal(expected, ResourceKind.Suggest(typed));
    }
}
