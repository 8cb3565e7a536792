using Outpost.Core.Resources;
using Outpost.Core.Sync;

namespace Outpost.Core.Tests.Sync;

public sealed class DesiredStateDiffTests
{
    private static StoredResource App(string name, long rv, string selector = "{}") => new()
    {
        Kind = "Application",
        Name = name,
        Uid = name,
        ResourceVersion = rv,
        Generation = 1,
        CreationTimestamp = DateTimeOffset.UnixEpoch,
        SpecJson = "{\"module\":{\"digest\":\"sha256:00\"},\"placement\":{\"nodeSelector\":" + selector + "}}",
    };

    [Fact]
    public void ForNode_KeepsOnlyAppsWhoseSelectorMatches()
    {
        var apps = new[] { App("all", 1), App("a", 2, """{"site":"a"}"""), App("b", 3, """{"site":"b"}""") };

        var desired = DesiredStateDiff.ForNode(apps, new Dictionary<string, string> { ["site"] = "a" });

        Assert.Equal(["all", "a"], desired.Select(r => r.Name));
    }

    [Fact]
    public void Compute_SendsNewAndChanged_DeletesGone_SkipsUnchanged()
    {
        var sent = new Dictionary<string, long> { ["Application/same"] = 1, ["Application/changed"] = 2, ["Application/gone"] = 3 };
        var desired = new[] { App("same", 1), App("changed", 5), App("new", 6) };

        var (upserts, deletes) = DesiredStateDiff.Compute(sent, desired);

        Assert.Equal(["changed", "new"], upserts.Select(r => r.Name));
        Assert.Equal(["Application/gone"], deletes);
    }

    [Fact]
    public void AppPlan_StartsReplacesAndStops()
    {
        var running = new[] { new AppVersion("keep", 1, "d1", "{}"), new AppVersion("bump", 1, "d1", "{}"), new AppVersion("drop", 1, "d1", "{}") };
        var desired = new[] { new AppVersion("keep", 1, "d1", "{}"), new AppVersion("bump", 2, "d2", "{}"), new AppVersion("add", 1, "d3", "{}") };

        var plan = AppPlan.Compute(desired, running);

        Assert.Equal(["add"], plan.Start.Select(a => a.Name));
        Assert.Equal(["bump"], plan.Replace.Select(a => a.Name));
        Assert.Equal(["drop"], plan.Stop);
    }
}
