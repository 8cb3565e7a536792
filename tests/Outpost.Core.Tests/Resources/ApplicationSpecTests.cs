using System.Text.Json.Nodes;
using Outpost.Core.Resources;

namespace Outpost.Core.Tests.Resources;

public sealed class ApplicationSpecTests
{
    private static ApplicationSpec App(string route, string selector = "{}") => ApplicationSpec.FromJson(new JsonObject
    {
        ["module"] = new JsonObject { ["digest"] = "sha256:00" },
        ["triggers"] = new JsonObject { ["http"] = new JsonObject { ["route"] = route } },
        ["placement"] = new JsonObject { ["nodeSelector"] = JsonNode.Parse(selector) },
    });

    [Theory]
    [InlineData("{}", "{}", true)]                                   // both everywhere
    [InlineData("{\"site\":\"a\"}", "{}", true)]                     // everywhere includes site a
    [InlineData("{\"site\":\"a\"}", "{\"site\":\"a\"}", true)]
    [InlineData("{\"site\":\"a\"}", "{\"tier\":\"edge\"}", true)]    // a node labelled site=a,tier=edge runs both
    [InlineData("{\"site\":\"a\"}", "{\"site\":\"b\"}", false)]      // no node has two sites
    [InlineData("{\"site\":\"a\",\"tier\":\"edge\"}", "{\"tier\":\"core\"}", false)]
    public void CanShareANodeWith_IsAboutTheSelectors_BothWays(string mine, string theirs, bool shared)
    {
        Assert.Equal(shared, App("/x", mine).CanShareANodeWith(App("/x", theirs)));
        Assert.Equal(shared, App("/x", theirs).CanShareANodeWith(App("/x", mine)));
    }

    [Fact]
    public void RouteConflictsWith_TheSameRouteOnASharedNode_Only()
    {
        Assert.True(App("/hello").RouteConflictsWith(App("/hello")));
        Assert.False(App("/hello").RouteConflictsWith(App("/hello/v2"))); // a longer prefix is a route of its own
        Assert.False(App("/hello", "{\"site\":\"a\"}").RouteConflictsWith(App("/hello", "{\"site\":\"b\"}")));
        var timerOnly = ApplicationSpec.FromJson(JsonNode.Parse("""{"module":{"digest":"sha256:00"},"triggers":{"timer":{"every":"1s"}}}""")!.AsObject());
        Assert.False(timerOnly.RouteConflictsWith(App("/hello")));
    }
}
