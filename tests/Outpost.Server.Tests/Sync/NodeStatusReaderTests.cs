using Outpost.Server.Sync;

namespace Outpost.Server.Tests.Sync;

public sealed class NodeStatusReaderTests
{
    [Fact]
    public void Read_TakesTheBeatAndEachAppsReport_AndSkipsWhatIsNotAnApp()
    {
        var (beat, apps) = NodeStatusReader.Read("""
            {"lastHeartbeatTime":"2026-12-03T08:00:00.000Z","usage":{"cpu":0.5},
             "apps":{"hello":{"state":"Ready","message":"","generation":3},
                     "bad":{"state":"Failed","message":"trap","generation":2,"failedGeneration":4},
                     "odd":"not an app"}}
            """);

        Assert.Equal("2026-12-03T08:00:00.000Z", beat);
        Assert.Equal(new NodeAppReport("Ready", 3, 0, ""), apps["hello"]);
        Assert.Equal(new NodeAppReport("Failed", 2, 4, "trap"), apps["bad"]);
        Assert.False(apps.ContainsKey("odd"));
    }

    [Theory]
    [InlineData(null)]
    [InlineData("{}")]
    [InlineData("[]")]
    [InlineData("""{"apps":[]}""")]
    public void Read_OfAStatusWithoutApps_IsEmpty(string? status)
    {
        var (beat, apps) = NodeStatusReader.Read(status);

        Assert.Null(beat);
        Assert.Empty(apps);
    }
}
