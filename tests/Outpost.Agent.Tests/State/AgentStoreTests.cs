using Outpost.Agent.State;

namespace Outpost.Agent.Tests.State;

public sealed class AgentStoreTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("outpost-agent-").FullName;

    [Fact]
    public void Apply_IsDurableAcrossReopen_AndSnapshotReplacesEverything()
    {
        var path = Path.Combine(_dir, "agent.db");
        using (var store = new AgentStore(path))
        {
            store.SaveIdentity(new NodeIdentity("http://s", "edge-1", "uid", "opn_x"));
            store.Apply(5, snapshot: true, [new DesiredResource("Application", "a", 3, 1, "{}"), new DesiredResource("Application", "b", 4, 1, "{}")], []);
            store.Apply(6, snapshot: false, [new DesiredResource("Application", "c", 6, 1, "{}")], [("Application", "a")]);
        }

        using var reopened = new AgentStore(path);
        Assert.Equal(6, reopened.AppliedRevision);
        Assert.Equal(["b", "c"], reopened.LoadDesired().Select(r => r.Name));
        Assert.Equal("edge-1", reopened.LoadIdentity()!.NodeName);

        reopened.Apply(7, snapshot: true, [new DesiredResource("Application", "z", 7, 1, "{}")], []);
        Assert.Equal(["z"], reopened.LoadDesired().Select(r => r.Name));
    }

    [Fact]
    public void ModuleCache_PublishesOnlyVerifiedContent()
    {
        var cache = new ModuleCache(Path.Combine(_dir, "modules"));
        var bytes = File.ReadAllBytes(Path.Combine(AppContext.BaseDirectory, "Modules", "hello.wasm"));
        var digest = Core.Resources.Digest.Compute(bytes);

        File.WriteAllBytes(cache.PartialPathFor(digest), bytes[..100]);
        Assert.Equal(100, cache.PartialLength(digest));
        File.AppendAllText(cache.PartialPathFor(digest), "corrupt");
        Assert.Throws<InvalidDataException>(() => cache.Complete(digest));
        Assert.False(cache.Has(digest));
        Assert.Equal(0, cache.PartialLength(digest));

        File.WriteAllBytes(cache.PartialPathFor(digest), bytes);
        cache.Complete(digest);
        Assert.True(cache.Has(digest));
        Assert.Equal(bytes, cache.Read(digest));
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);
}
