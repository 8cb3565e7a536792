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

    [Fact]
    public void Outbox_DropOldestKeepsNewest_AndCountsEveryDrop()
    {
        using var data = new LocalDataStore(Path.Combine(_dir, "q.db"), quotaBytes: 100);
        for (var i = 0; i < 10; i++)
        {
            Assert.True(data.Append("t", "app", new byte[30]) > 0);
        }

        Assert.Equal(new OutboxStats(3, 90, 7, OverflowPolicy.DropOldest, 100), data.Stats);
        Assert.Equal([8L, 9L, 10L], data.ReadOutbox(100).Select(r => r.Sequence));
    }

    [Fact]
    public void Outbox_RejectNew_RefusesAndCounts_AndAckedRecordsFreeSpace()
    {
        var path = Path.Combine(_dir, "r.db");
        using (var data = new LocalDataStore(path, quotaBytes: 100, policy: OverflowPolicy.RejectNew))
        {
            Assert.Equal(3, data.AppendMany(Enumerable.Range(0, 5).Select(_ => ("t", "app", new byte[30]))));
            Assert.Equal(-1, data.Append("t", "app", new byte[30]));
            data.DeleteThrough(2);
            Assert.True(data.Append("t", "app", new byte[30]) > 0);
        }

        using var reopened = new LocalDataStore(path, quotaBytes: 100, policy: OverflowPolicy.RejectNew);
        Assert.Equal(new OutboxStats(2, 60, 3, OverflowPolicy.RejectNew, 100), reopened.Stats);
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);
}
