using Outpost.Agent.Hosting;

namespace Outpost.Agent.Tests.Hosting;

/// <summary>`--server URL1,URL2,…`: the replicas an agent tries in turn, each checked before the agent starts.</summary>
public sealed class AgentOptionsTests
{
    private static AgentOptions Options(string first, params string[] others) =>
        new() { ServerUrl = first, OtherServerUrls = others, NodeName = "edge-1", DataDir = "/tmp/outpost-agent-options" };

    [Fact]
    public void Replicas_AreTriedInTheOrderGiven()
    {
        var options = Options("https://a.example:7440", "https://b.example:7440");
        options.Validate();
        Assert.Equal(["https://a.example:7440", "https://b.example:7440"], options.ServerUrls);
    }

    [Fact]
    public void AReplicaThatIsNoUrl_IsNamed()
    {
        var ex = Assert.Throws<ArgumentException>(() => Options("https://a.example:7440", "b.example:7440").Validate());
        Assert.Equal("--server 'b.example:7440' is not an http(s) URL", ex.Message);
    }

    [Fact]
    public void ReplicasMixingHttpAndHttps_AreRefused()
    {
        var ex = Assert.Throws<ArgumentException>(() => Options("https://a.example:7440", "http://b.example:7440").Validate());
        Assert.Contains("mixes http and https", ex.Message, StringComparison.Ordinal);
    }
}
