using Outpost.Core.Selectors;

namespace Outpost.Core.Tests.Selectors;

public sealed class LabelSelectorTests
{
    private static readonly Dictionary<string, string> Node = new() { ["site"] = "lab", ["tier"] = "edge" };

    [Theory]
    [InlineData("", true)]
    [InlineData("site=lab", true)]
    [InlineData("site==lab,tier=edge", true)]
    [InlineData("site!=lab", false)]
    [InlineData("site in (lab, shop)", true)]
    [InlineData("site notin (lab)", false)]
    [InlineData("tier", true)]
    [InlineData("!gpu", true)]
    [InlineData("gpu", false)]
    [InlineData("site in (a,b),tier=edge", false)]
    public void Matches(string selector, bool expected) =>
        Assert.Equal(expected, LabelSelector.Parse(selector).Matches(Node));

    [Theory]
    [InlineData("site in lab")]
    [InlineData("=x")]
    public void Malformed_Throws(string selector) =>
        Assert.Throws<FormatException>(() => LabelSelector.Parse(selector));

    [Fact]
    public void LabelList_ParsesAndRejectsPairsWithoutEquals()
    {
        Assert.Equal("a", Labels.ParseList("site=a, tier=b")["site"]);
        Assert.Throws<FormatException>(() => Labels.ParseList("site"));
    }
}
