using Outpost.Core.Api;

namespace Outpost.Core.Tests.Api;

public sealed class HumanDurationTests
{
    [Theory]
    [InlineData(-5, "<invalid>")]
    [InlineData(-1, "0s")]
    [InlineData(45, "45s")]
    [InlineData(119, "119s")]
    [InlineData(200, "3m20s")]
    [InlineData(240, "4m")]
    [InlineData(15 * 60 + 30, "15m")]
    [InlineData((3 * 3600) + (12 * 60), "3h12m")]
    [InlineData(5 * 3600, "5h")]
    [InlineData(30 * 3600, "30h")]
    [InlineData((2 * 86400) + (5 * 3600), "2d5h")]
    [InlineData(3 * 86400, "3d")]
    [InlineData(30 * 86400, "30d")]
    [InlineData((365 * 3 * 86400) + (120 * 86400), "3y120d")]
    [InlineData(365 * 10 * 86400, "10y")]
    public void Format_MatchesKubectl(long seconds, string expected) =>
        Assert.Equal(expected, HumanDuration.Format(TimeSpan.FromSeconds(seconds)));
}
