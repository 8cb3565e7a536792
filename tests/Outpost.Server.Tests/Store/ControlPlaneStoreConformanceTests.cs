using System.Text.Json.Nodes;
using Microsoft.Extensions.Time.Testing;
using Outpost.Core.Resources;
using Outpost.Core.Store;
using Outpost.Core.Sync;
using Outpost.Core.Tokens;

namespace Outpost.Server.Tests.Store;

/// <summary>
/// What every <see cref="IControlPlaneStore"/> must do. Each implementation inherits this
/// class and supplies a fresh, empty store; the tests are the contract.
/// </summary>
public abstract class ControlPlaneStoreConformanceTests : IAsyncLifetime
{
    protected FakeTimeProvider Time { get; } = new(new DateTimeOffset(2026, 11, 26, 12, 0, 0, TimeSpan.Zero));

    private IControlPlaneStore _store = null!;

    protected abstract Task<IControlPlaneStore> CreateStoreAsync();

    /// <summary>Another store on the same data as the one under test (not yet initialised).</summary>
    protected abstract IControlPlaneStore CreateSecondStore();

    public async Task InitializeAsync()
    {
        _store = await CreateStoreAsync();
        await _store.InitializeAsync(CancellationToken.None);
    }

    public async Task DisposeAsync() => await _store.DisposeAsync();

    private static ResourceWrite App(string name, string spec = """{"module":{"digest":"sha256:00"}}""", WriteOp op = WriteOp.Upsert, Dictionary<string, string>? labels = null, long? expected = null) => new()
    {
        Op = op,
        Kind = "Application",
        Name = name,
        SpecJson = spec,
        Labels = labels ?? [],
        ExpectedResourceVersion = expected,
    };

    private Task<IReadOnlyList<WriteResult>> Write(params ResourceWrite[] writes) => _store.WriteAsync(writes, CancellationToken.None);

    [Fact]
    public async Task EmptyStore_HasRevisionZeroAndNoItems()
    {
        Assert.Equal(0, await _store.GetRevisionAsync(CancellationToken.None));
        Assert.Empty((await _store.ListAsync("Application", CancellationToken.None)).Items);
        Assert.Null(await _store.GetAsync("Application", "nope", CancellationToken.None));
    }

    [Fact]
    public async Task Create_AssignsUidRevisionGenerationAndTimestamp()
    {
        var result = (await Write(App("a", labels: new() { ["tier"] = "edge" })))[0];

        Assert.Equal(WriteOutcome.Created, result.Outcome);
        Assert.Equal(1, result.Resource.ResourceVersion);
        Assert.Equal(1, result.Resource.Generation);
        Assert.True(Guid.TryParse(result.Resource.Uid, out _));
        Assert.Equal(Time.GetUtcNow(), result.Resource.CreationTimestamp);
        var read = await _store.GetAsync("Application", "a", CancellationToken.None);
        Assert.NotNull(read);
        Assert.Equal("edge", read.Labels["tier"]);
        Assert.Equal(result.Resource.SpecJson, read.SpecJson);
    }

    [Fact]
    public async Task Revisions_IncreaseGloballyAcrossResources()
    {
        await Write(App("a"));
        await Write(App("b"));
        var c = (await Write(App("a", """{"v":2}""")))[0];

        Assert.Equal(3, c.Resource.ResourceVersion);
        Assert.Equal(3, await _store.GetRevisionAsync(CancellationToken.None));
    }

    [Fact]
    public async Task Upsert_SameSpecAndLabels_IsUnchangedAndTakesNoRevision()
    {
        await Write(App("a"));
        var again = (await Write(App("a")))[0];

        Assert.Equal(WriteOutcome.Unchanged, again.Outcome);
        Assert.Equal(1, await _store.GetRevisionAsync(CancellationToken.None));
    }

    [Fact]
    public async Task Upsert_LabelChange_BumpsRevisionButNotGeneration()
    {
        await Write(App("a"));
        var relabelled = (await Write(App("a", labels: new() { ["x"] = "y" })))[0];

        Assert.Equal(WriteOutcome.Configured, relabelled.Outcome);
        Assert.Equal(2, relabelled.Resource.ResourceVersion);
        Assert.Equal(1, relabelled.Resource.Generation);
    }

    [Fact]
    public async Task Upsert_SpecChange_BumpsGenerationAndKeepsUid()
    {
        var created = (await Write(App("a")))[0];
        var changed = (await Write(App("a", """{"v":2}""")))[0];

        Assert.Equal(2, changed.Resource.Generation);
        Assert.Equal(created.Resource.Uid, changed.Resource.Uid);
        Assert.Equal(created.Resource.CreationTimestamp, changed.Resource.CreationTimestamp);
    }

    [Fact]
    public async Task Create_Existing_FailsWithAlreadyExists()
    {
        await Write(App("a"));

        var ex = await Assert.ThrowsAsync<StoreException>(() => Write(App("a", op: WriteOp.Create)));
        Assert.Equal(StoreError.AlreadyExists, ex.Error);
    }

    [Fact]
    public async Task Replace_Missing_FailsWithNotFound()
    {
        var ex = await Assert.ThrowsAsync<StoreException>(() => Write(App("a", op: WriteOp.Replace)));
        Assert.Equal(StoreError.NotFound, ex.Error);
    }

    [Fact]
    public async Task Replace_StaleResourceVersion_FailsWithConflict()
    {
        await Write(App("a"));
        await Write(App("a", """{"v":2}"""));

        var ex = await Assert.ThrowsAsync<StoreException>(() => Write(App("a", """{"v":3}""", WriteOp.Replace, expected: 1)));
        Assert.Equal(StoreError.Conflict, ex.Error);
    }

    [Fact]
    public async Task Batch_WithOneFailure_AppliesNothing()
    {
        await Write(App("existing"));

        await Assert.ThrowsAsync<StoreException>(() => Write(App("new-1"), App("existing", op: WriteOp.Create), App("new-2")));

        Assert.Null(await _store.GetAsync("Application", "new-1", CancellationToken.None));
        Assert.Null(await _store.GetAsync("Application", "new-2", CancellationToken.None));
        Assert.Equal(1, await _store.GetRevisionAsync(CancellationToken.None));
    }

    [Fact]
    public async Task Delete_RemovesAndRecordsAChange()
    {
        await Write(App("a"));
        var deleted = (await Write(App("a", op: WriteOp.Delete)))[0];

        Assert.Equal(WriteOutcome.Deleted, deleted.Outcome);
        Assert.Null(await _store.GetAsync("Application", "a", CancellationToken.None));
        var changes = await _store.ListChangesAsync(0, 100, CancellationToken.None);
        Assert.Equal([ChangeOp.Upserted, ChangeOp.Deleted], changes.Select(c => c.Op));
        Assert.Equal(2, changes[^1].Revision);
    }

    [Fact]
    public async Task Delete_Missing_FailsWithNotFound()
    {
        var ex = await Assert.ThrowsAsync<StoreException>(() => Write(App("a", op: WriteOp.Delete)));
        Assert.Equal(StoreError.NotFound, ex.Error);
    }

    [Fact]
    public async Task ListChanges_ReturnsOnlyAfterTheRevisionInOrder()
    {
        await Write(App("a"), App("b"), App("c"));

        var changes = await _store.ListChangesAsync(1, 100, CancellationToken.None);

        Assert.Equal(["b", "c"], changes.Select(c => c.Name));
        Assert.Equal([2L, 3L], changes.Select(c => c.Revision));
    }

    [Fact]
    public async Task List_IsSortedByNameAndCarriesTheRevision()
    {
        await Write(App("b"), App("a"));

        var page = await _store.ListAsync("Application", CancellationToken.None);

        Assert.Equal(["a", "b"], page.Items.Select(i => i.Name));
        Assert.Equal(2, page.Revision);
    }

    [Fact]
    public async Task List_WithALabelSelector_HoldsOnlyWhatHasEveryPair_InOrder_AtTheRevision()
    {
        await Write(
            App("d", labels: new() { ["fleet"] = "undo", ["outpost.dev/site"] = "x" }),
            App("a", labels: new() { ["fleet"] = "undo", ["outpost.dev/site"] = "y" }),
            App("b", labels: new() { ["fleet"] = "rest", ["outpost.dev/site"] = "x" }),
            App("c"),
            App("e", labels: new() { ["fleet"] = "undone", ["odd\"key"] = "v" }));

        var undo = await _store.ListAsync("Application", new Dictionary<string, string> { ["fleet"] = "undo" }, CancellationToken.None);
        Assert.Equal(["a", "d"], undo.Items.Select(i => i.Name));
        Assert.Equal(5, undo.Revision);
        Assert.All(undo.Items, i => Assert.NotNull(i.SpecJson));

        // Every pair must hold; a key with dots and a slash is one key, not a path.
        var both = await _store.ListAsync("Application", new Dictionary<string, string> { ["fleet"] = "undo", ["outpost.dev/site"] = "x" }, CancellationToken.None);
        Assert.Equal(["d"], both.Items.Select(i => i.Name));
        Assert.Empty((await _store.ListAsync("Application", new Dictionary<string, string> { ["fleet"] = "nowhere" }, CancellationToken.None)).Items);
        Assert.Empty((await _store.ListAsync("Node", new Dictionary<string, string> { ["fleet"] = "undo" }, CancellationToken.None)).Items);
        Assert.Equal(["e"], (await _store.ListAsync("Application", new Dictionary<string, string> { ["odd\"key"] = "v" }, CancellationToken.None)).Items.Select(i => i.Name));

        // No pairs: the whole kind, as ListAsync(kind) has it.
        var all = await _store.ListAsync("Application", new Dictionary<string, string>(), CancellationToken.None);
        Assert.Equal(["a", "b", "c", "d", "e"], all.Items.Select(i => i.Name));
        Assert.Equal((await _store.ListAsync("Application", CancellationToken.None)).Items.Select(i => i.Name), all.Items.Select(i => i.Name));
    }

    [Fact]
    public async Task UpdateStatus_DoesNotTakeARevision()
    {
        await Write(App("a"));
        await _store.UpdateStatusAsync("Application", "a", """{"ready":1}""", CancellationToken.None);

        var read = await _store.GetAsync("Application", "a", CancellationToken.None);
        Assert.Equal("""{"ready":1}""", read!.StatusJson);
        Assert.Equal(1, await _store.GetRevisionAsync(CancellationToken.None));
    }

    [Fact]
    public async Task SetStatusFields_ReplacesThoseFieldsWhole_KeepsTheRest_AndTakesNoRevision()
    {
        await Write(App("a"));
        var ct = CancellationToken.None;

        // No status yet: the fields become it.
        await _store.SetStatusFieldsAsync("Application", "a", new JsonObject { ["ready"] = 1 }, ct);
        Assert.True(JsonNode.DeepEquals(JsonNode.Parse("""{"ready":1}"""), JsonNode.Parse((await _store.GetAsync("Application", "a", ct))!.StatusJson!)));

        await _store.UpdateStatusAsync("Application", "a", """{"ready":1,"keep":{"x":[1,2]},"text":"é \"quoted\" \\ line\n","nested":{"a":1,"b":2}}""", ct);
        await _store.SetStatusFieldsAsync("Application", "a", new JsonObject
        {
            ["ready"] = 2,
            ["added"] = "new",
            ["nested"] = new JsonObject { ["c"] = 3 },
            ["with.dot[0]"] = true,
        }, ct);

        var status = JsonNode.Parse((await _store.GetAsync("Application", "a", ct))!.StatusJson!)!.AsObject();
        Assert.Equal(2, status["ready"]!.GetValue<int>());
        Assert.True(JsonNode.DeepEquals(JsonNode.Parse("""{"x":[1,2]}"""), status["keep"]));
        Assert.Equal("é \"quoted\" \\ line\n", status["text"]!.GetValue<string>());
        Assert.Equal("new", status["added"]!.GetValue<string>());
        Assert.True(JsonNode.DeepEquals(JsonNode.Parse("""{"c":3}"""), status["nested"]), $"an object field is replaced, not merged: {status["nested"]}");
        Assert.True(status["with.dot[0]"]!.GetValue<bool>());
        Assert.Equal(6, status.Count);
        Assert.Equal(1, await _store.GetRevisionAsync(ct));

        var missing = await Assert.ThrowsAsync<StoreException>(() => _store.SetStatusFieldsAsync("Application", "nope", new JsonObject { ["ready"] = 1 }, ct));
        Assert.Equal(StoreError.NotFound, missing.Error);
    }

    [Fact]
    public async Task Blobs_StoreOnceAndReadByOffset()
    {
        var content = Enumerable.Range(0, 1000).Select(i => (byte)i).ToArray();

        Assert.True(await _store.PutBlobAsync("sha256:abc", content, CancellationToken.None));
        Assert.False(await _store.PutBlobAsync("sha256:abc", content, CancellationToken.None));
        Assert.Equal(1000, await _store.GetBlobSizeAsync("sha256:abc", CancellationToken.None));
        Assert.Null(await _store.GetBlobSizeAsync("sha256:missing", CancellationToken.None));

        var buffer = new byte[300];
        var n = await _store.ReadBlobAsync("sha256:abc", 900, buffer, CancellationToken.None);
        Assert.Equal(100, n);
        Assert.Equal(content[900..], buffer[..100]);
    }

    [Fact]
    public async Task ImageTags_PointAtManifests_MoveWhenPushedAgain_AndListByRepository()
    {
        var ct = CancellationToken.None;
        await _store.SetImageTagAsync("team/web", "v1", "sha256:one", ct);
        await _store.SetImageTagAsync("team/web", "latest", "sha256:one", ct);
        await _store.SetImageTagAsync("db", "15", "sha256:pg", ct);
        await _store.SetImageTagAsync("team/web", "latest", "sha256:two", ct);

        Assert.Equal("sha256:two", await _store.GetImageTagAsync("team/web", "latest", ct));
        Assert.Null(await _store.GetImageTagAsync("team/web", "v2", ct));
        Assert.Null(await _store.GetImageTagAsync("team", "latest", ct));
        Assert.Equal(["latest:sha256:two", "v1:sha256:one"], (await _store.ListImageTagsAsync("team/web", ct)).Select(t => $"{t.Tag}:{t.Digest}"));
        Assert.Equal(["db:15", "team/web:latest", "team/web:v1"], (await _store.ListImageTagsAsync(null, ct)).Select(t => $"{t.Repository}:{t.Tag}"));

        Assert.True(await _store.DeleteImageTagAsync("team/web", "v1", ct));
        Assert.False(await _store.DeleteImageTagAsync("team/web", "v1", ct));
        Assert.Equal(["latest"], (await _store.ListImageTagsAsync("team/web", ct)).Select(t => t.Tag));
    }

    [Fact]
    public async Task Tokens_RoundTripListAndDelete()
    {
        var issued = TokenCodec.Issue(TokenKind.Join, Time.GetUtcNow(), expiresAt: Time.GetUtcNow().AddHours(1), description: "for edge-1",
            maxUses: 2, labels: new Dictionary<string, string> { ["site"] = "berlin" });
        await _store.CreateTokenAsync(issued.Record, CancellationToken.None);

        var read = await _store.GetTokenAsync(issued.Record.Id, CancellationToken.None);
        Assert.Equal(issued.Record with { Labels = read!.Labels }, read);
        Assert.Equal(issued.Record.Labels, read.Labels);

        // Uses are counted atomically and stop at the limit.
        Assert.True(await _store.TryUseTokenAsync(issued.Record.Id, CancellationToken.None));
        Assert.True(await _store.TryUseTokenAsync(issued.Record.Id, CancellationToken.None));
        Assert.False(await _store.TryUseTokenAsync(issued.Record.Id, CancellationToken.None));
        Assert.Equal(2, (await _store.GetTokenAsync(issued.Record.Id, CancellationToken.None))!.Uses);
        Assert.Single(await _store.ListTokensAsync(CancellationToken.None));
        Assert.True(await _store.DeleteTokenAsync(issued.Record.Id, CancellationToken.None));
        Assert.Null(await _store.GetTokenAsync(issued.Record.Id, CancellationToken.None));
        Assert.False(await _store.DeleteTokenAsync(issued.Record.Id, CancellationToken.None));
    }

    [Fact]
    public async Task AppRevisions_AreRecordedPerSpecChange_PrunedToTheNewest_AndGoWithTheApp()
    {
        var ct = CancellationToken.None;
        await Write(App("a", """{"module":{"digest":"sha256:01"}}"""));
        await Write(App("a", """{"module":{"digest":"sha256:01"}}""", labels: new() { ["only"] = "labels" })); // no spec change
        await Write(App("a", """{"module":{"digest":"sha256:02"}}"""));
        await Write(App("a", """{"module":{"digest":"sha256:03"}}"""));
        await Write(App("b"));

        var revisions = await _store.ListAppRevisionsAsync("a", 10, ct);
        Assert.Equal([3L, 2L, 1L], revisions.Select(r => r.Revision));
        Assert.Equal(["sha256:03", "sha256:02", "sha256:01"], revisions.Select(r => r.Digest));
        Assert.Contains("sha256:02", revisions[1].SpecJson, StringComparison.Ordinal);

        await _store.PruneAppRevisionsAsync(2, ct);
        Assert.Equal([3L, 2L], (await _store.ListAppRevisionsAsync("a", 10, ct)).Select(r => r.Revision));
        Assert.Single(await _store.ListAppRevisionsAsync("b", 10, ct));

        await Write(App("a", op: WriteOp.Delete));
        Assert.Empty(await _store.ListAppRevisionsAsync("a", 10, ct));
    }

    [Fact]
    public async Task NodeTokens_GoWithTheirNode_AndTheRevisionMovesWithEachWrite_ReadsInBetweenNotwithstanding()
    {
        var ct = CancellationToken.None;
        await Write(new ResourceWrite { Op = WriteOp.Upsert, Kind = "Node", Name = "edge-1" });
        var issued = TokenCodec.Issue(TokenKind.Node, Time.GetUtcNow(), subject: "edge-1");
        await _store.CreateTokenAsync(issued.Record, ct);
        var revision = await _store.GetRevisionAsync(ct);
        Assert.NotNull(await _store.GetTokenAsync(issued.Record.Id, ct)); // read (and perhaps kept) before the node goes

        await Write(new ResourceWrite { Op = WriteOp.Delete, Kind = "Node", Name = "edge-1" });

        Assert.Null(await _store.GetTokenAsync(issued.Record.Id, ct));
        Assert.Equal(revision + 1, await _store.GetRevisionAsync(ct));
    }

    [Fact]
    public async Task ARolloutThatMovesNodes_TakesARevision_SeenAtOnce_AndOneThatDoesNot_TakesNone()
    {
        var ct = CancellationToken.None;
        await Write(App("a"));
        var before = await _store.GetRevisionAsync(ct);
        var state = new Outpost.Core.Rollouts.RolloutState { Revision = 1, StartedAt = Time.GetUtcNow() };

        Assert.Equal(0, await _store.SaveRolloutAsync("a", state, movesNodes: false, null, ct));
        Assert.Equal(before, await _store.GetRevisionAsync(ct));

        var moved = await _store.SaveRolloutAsync("a", state with { Step = 1, Moved = ["edge-1"] }, movesNodes: true, null, ct);
        Assert.Equal(before + 1, moved);
        Assert.Equal(moved, await _store.GetRevisionAsync(ct));
        Assert.Equal("a", (await _store.ListChangesAsync(before, 10, ct)).Single().Name);
    }

    [Fact]
    public async Task ARolloutSaveOverAStateThatChangedSinceItWasRead_IsRefused_AndWritesNothing()
    {
        var ct = CancellationToken.None;
        await Write(App("a"));
        var read = new Outpost.Core.Rollouts.RolloutState { Revision = 1, StartedAt = Time.GetUtcNow() };
        await _store.SaveRolloutAsync("a", read, movesNodes: false, null, ct);

        // The leader moves a step over what it read; a pause made from that same read is then stale.
        var stepped = read with { Step = 1, Moved = ["edge-1"] };
        var revision = await _store.GetRevisionAsync(ct);
        Assert.True(await _store.SaveRolloutAsync("a", stepped, movesNodes: true, null, ct, unchangedFrom: read) > revision);
        var paused = read with { Paused = true };
        var error = await Assert.ThrowsAsync<StoreException>(() => _store.SaveRolloutAsync("a", paused, movesNodes: true, null, ct, unchangedFrom: read));

        Assert.Equal(StoreError.Conflict, error.Error);
        Assert.Contains("changed since it was read (now revision 1 step 2", error.Message, StringComparison.Ordinal);
        Assert.Equal(stepped.ToJson().ToJsonString(), (await _store.ListRolloutsAsync(ct))["a"].ToJson().ToJsonString());
        Assert.Equal(revision + 1, await _store.GetRevisionAsync(ct)); // the refused save took no revision

        // Made again from what is stored, it goes through.
        await _store.SaveRolloutAsync("a", stepped with { Paused = true }, movesNodes: false, null, ct, unchangedFrom: stepped);
        Assert.True((await _store.ListRolloutsAsync(ct))["a"].Paused);
        // Expecting a state where there is none is refused too.
        await Write(App("b"));
        Assert.Equal(StoreError.Conflict, (await Assert.ThrowsAsync<StoreException>(() => _store.SaveRolloutAsync("b", read, movesNodes: false, null, ct, unchangedFrom: read))).Error);
        Assert.False((await _store.ListRolloutsAsync(ct)).ContainsKey("b"));
    }

    [Fact]
    public async Task ChangeFeed_MovesWithEachCommittedChange_AndNotForWritesThatChangeNothingOrFail()
    {
        var ct = CancellationToken.None;
        Assert.Equal(0, _store.Changes.Latest);
        var waiting = _store.Changes.WaitAfterAsync(0, ct);
        Assert.False(waiting.IsCompleted);

        var created = (await Write(App("a")))[0].Resource.ResourceVersion;
        // Published before the write returns (a session woken by it reads the change); waiters wake.
        Assert.Equal(created, _store.Changes.Latest);
        Assert.Equal(created, await waiting.WaitAsync(TimeSpan.FromSeconds(30)));
        Assert.Equal(created, (await _store.ListChangesAsync(0, 10, ct))[^1].Revision);

        await Write(App("a")); // unchanged
        await Assert.ThrowsAsync<StoreException>(() => Write(App("b"), App("a", op: WriteOp.Create))); // all or nothing: fails
        Assert.Equal(created, _store.Changes.Latest);

        var deleted = (await Write(new ResourceWrite { Op = WriteOp.Delete, Kind = "Application", Name = "a" }))[0].Resource.ResourceVersion;
        Assert.Equal(deleted, _store.Changes.Latest);

        await Write(App("c"));
        var state = new Outpost.Core.Rollouts.RolloutState { Revision = 1, StartedAt = Time.GetUtcNow() };
        var before = _store.Changes.Latest;
        await _store.SaveRolloutAsync("c", state, movesNodes: false, null, ct);
        Assert.Equal(before, _store.Changes.Latest);
        var moved = await _store.SaveRolloutAsync("c", state with { Step = 1, Moved = ["edge-1"] }, movesNodes: true, null, ct);
        Assert.Equal(moved, _store.Changes.Latest);
        Assert.Equal(await _store.GetRevisionAsync(ct), _store.Changes.Latest);
    }

    [Fact]
    public async Task ChangeFeeds_OfAStoreOpenedAgain_StartWhereTheRevisionsStand()
    {
        var ct = CancellationToken.None;
        await Write(App("a"), App("b"));
        await _store.MergeBucketAsync("settings", "", ConflictPolicy.Lww, [KvW("mode", 100, "cloud", "eco")], ct);
        await using var again = CreateSecondStore();
        await again.InitializeAsync(ct);

        Assert.Equal(2, again.Changes.Latest);
        Assert.Equal(1, again.BucketChanges.Latest);
    }

    [Fact]
    public async Task BucketFeed_MovesWhenAMergeStoresAWrite_AndNotForDuplicatesOrLosers()
    {
        var ct = CancellationToken.None;
        var waiting = _store.BucketChanges.WaitAfterAsync(0, ct);
        await _store.MergeBucketAsync("settings", "", ConflictPolicy.Lww, [KvW("mode", 100, "cloud", "eco"), KvW("level", 100, "cloud", "3")], ct);
        Assert.Equal(2, _store.BucketChanges.Latest);
        Assert.Equal(2, await waiting.WaitAsync(TimeSpan.FromSeconds(30)));

        await _store.MergeBucketAsync("settings", "", ConflictPolicy.Lww, [KvW("mode", 100, "cloud", "eco")], ct); // a duplicate
        await _store.MergeBucketAsync("settings", "", ConflictPolicy.Lww, [KvW("mode", 50, "edge-1", "turbo")], ct); // loses
        Assert.Equal(2, _store.BucketChanges.Latest);
        Assert.Equal(0, _store.Changes.Latest); // bucket data is not a resource change
    }

    [Fact]
    public async Task Leases_AreHeldByOneHolder_RenewedInPlace_TakenOverWithTheNextEpochOnlyOnceRunOutOrReleased()
    {
        var ct = CancellationToken.None;
        var ttl = TimeSpan.FromSeconds(10);
        var first = await _store.AcquireLeaseAsync("controllers", "replica-a", ttl, ct);
        Assert.Equal(new LeaderLease("controllers", "replica-a", 1, Time.GetUtcNow() + ttl), first);

        Time.Advance(TimeSpan.FromSeconds(4));
        var renewed = await _store.AcquireLeaseAsync("controllers", "replica-a", ttl, ct);
        Assert.Equal(new LeaderLease("controllers", "replica-a", 1, Time.GetUtcNow() + ttl), renewed);

        // Another replica is refused while it runs, and told who holds it.
        Time.Advance(TimeSpan.FromSeconds(9));
        Assert.Equal(renewed, await _store.AcquireLeaseAsync("controllers", "replica-b", ttl, ct));
        Assert.Equal(1, (await _store.AcquireLeaseAsync("other", "replica-b", ttl, ct)).Epoch); // names are separate

        // Run out: the next asker takes it, with the next epoch; the old holder is now refused.
        Time.Advance(TimeSpan.FromSeconds(2));
        var taken = await _store.AcquireLeaseAsync("controllers", "replica-b", ttl, ct);
        Assert.Equal(new LeaderLease("controllers", "replica-b", 2, Time.GetUtcNow() + ttl), taken);
        Assert.Equal(taken, await _store.AcquireLeaseAsync("controllers", "replica-a", ttl, ct));

        // Released (a clean stop): taken at once, not a lease later. A release by a non-holder does nothing.
        await _store.ReleaseLeaseAsync("controllers", "replica-a", ct);
        Assert.Equal("replica-b", (await _store.AcquireLeaseAsync("controllers", "replica-c", ttl, ct)).Holder);
        await _store.ReleaseLeaseAsync("controllers", "replica-b", ct);
        Assert.Equal(new LeaderLease("controllers", "replica-a", 3, Time.GetUtcNow() + ttl), await _store.AcquireLeaseAsync("controllers", "replica-a", ttl, ct));

        // A holder whose own lease ran out with nobody taking it gets it back under a new epoch.
        Time.Advance(TimeSpan.FromSeconds(11));
        Assert.Equal(4, (await _store.AcquireLeaseAsync("controllers", "replica-a", ttl, ct)).Epoch);
    }

    [Fact]
    public async Task Leases_AskedForAtOnceByTwoStores_AreGrantedToOneHolder()
    {
        var ct = CancellationToken.None;
        await using var other = CreateSecondStore();
        await other.InitializeAsync(ct);
        var asks = Enumerable.Range(0, 20).Select(i => Task.Run(() =>
            (i % 2 == 0 ? _store : other).AcquireLeaseAsync("controllers", $"replica-{i}", TimeSpan.FromMinutes(1), ct))).ToList();
        var leases = await Task.WhenAll(asks);

        var holder = Assert.Single(leases.Select(l => (l.Holder, l.Epoch)).Distinct());
        Assert.Equal(1, holder.Epoch);
    }

    [Fact]
    public async Task Leases_AreListedByPrefix_AndThoseLongRunOutAreForgotten()
    {
        var ct = CancellationToken.None;
        var ttl = TimeSpan.FromSeconds(10);
        await _store.AcquireLeaseAsync("replica/b", "b", ttl, ct);
        await _store.AcquireLeaseAsync("replica/a", "a", ttl, ct);
        await _store.AcquireLeaseAsync("controllers", "a", ttl, ct);
        await _store.AcquireLeaseAsync("replica_x", "x", ttl, ct); // '_' is no wildcard
        Time.Advance(TimeSpan.FromSeconds(20));
        var a = await _store.AcquireLeaseAsync("replica/a", "a", ttl, ct);

        var listed = await _store.ListLeasesAsync("replica/", ct);
        Assert.Equal(["replica/a", "replica/b"], listed.Select(l => l.Name));
        Assert.Equal(a, listed[0]);
        Assert.True(listed[1].ExpiresAt < Time.GetUtcNow(), "a run-out lease is still listed");

        Assert.Equal(1, await _store.DeleteLeasesAsync("replica/", Time.GetUtcNow() - TimeSpan.FromSeconds(5), ct));
        Assert.Equal(["replica/a"], (await _store.ListLeasesAsync("replica/", ct)).Select(l => l.Name));
        Assert.Equal(2, (await _store.ListLeasesAsync("", ct)).Count(l => l.Name is "controllers" or "replica_x"));
    }

    [Fact]
    public async Task Presence_IsReplacedBySameSessionOrANewerOne_NeverByALateWordAboutAnOlderStream()
    {
        var ct = CancellationToken.None;
        await Write(new ResourceWrite { Op = WriteOp.Upsert, Kind = "Node", Name = "edge-1" }, new ResourceWrite { Op = WriteOp.Upsert, Kind = "Node", Name = "edge-2" });
        var t0 = Time.GetUtcNow();
        var onA = new NodePresence("edge-1", "replica-a", 7, t0, Connected: true, Beating: true, t0);
        await _store.SavePresenceAsync([onA, new NodePresence("edge-2", "replica-a", 8, t0, true, true, t0)], ct);
        Assert.Equal([onA.Node, "edge-2"], (await _store.ListPresenceAsync(ct)).Select(p => p.Node));

        // The node moves to replica b; replica a's word that its old stream closed comes late and changes nothing.
        var onB = new NodePresence("edge-1", "replica-b", 1, t0.AddSeconds(5), Connected: true, Beating: true, t0.AddSeconds(5));
        await _store.SavePresenceAsync([onB], ct);
        await _store.SavePresenceAsync([onA with { Connected = false, Beating = false, LastBeat = t0.AddSeconds(3) }], ct);
        Assert.Equal(onB, (await _store.ListPresenceAsync(ct))[0]);

        // Replica b's own later words about its stream apply: quiet, then closed.
        var quiet = onB with { Beating = false, LastBeat = t0.AddSeconds(9) };
        await _store.SavePresenceAsync([quiet], ct);
        Assert.Equal(quiet, (await _store.ListPresenceAsync(ct))[0]);
        await _store.SavePresenceAsync([quiet with { Connected = false }], ct);
        Assert.False((await _store.ListPresenceAsync(ct))[0].Connected);

        // A second store on the same data sees it; deleting the node deletes its row.
        await using var other = CreateSecondStore();
        await other.InitializeAsync(ct);
        Assert.Equal(2, (await other.ListPresenceAsync(ct)).Count);
        await Write(new ResourceWrite { Op = WriteOp.Delete, Kind = "Node", Name = "edge-1" });
        Assert.Equal(["edge-2"], (await _store.ListPresenceAsync(ct)).Select(p => p.Node));
    }

    [Fact]
    public async Task Traffic_IsSummedPerAppRevisionSinceATime_LeavingOutOneReplicaOnRequest_AndPruned()
    {
        var ct = CancellationToken.None;
        var t0 = Time.GetUtcNow();
        await _store.AppendTrafficAsync([
            new TrafficSample("a", 2, "edge-1", "replica-a", t0, 10, 1),
            new TrafficSample("a", 2, "edge-2", "replica-b", t0.AddSeconds(30), 20, 4),
            new TrafficSample("a", 1, "edge-2", "replica-b", t0.AddSeconds(30), 100, 100),
            new TrafficSample("b", 2, "edge-2", "replica-b", t0.AddSeconds(30), 1000, 1000),
        ], ct);
        await _store.AppendTrafficAsync([new TrafficSample("a", 2, "edge-1", "replica-a", t0.AddSeconds(60), 5, 0)], ct);

        Assert.Equal((35L, 5L), await _store.SumTrafficAsync("a", 2, t0, null, ct));
        Assert.Equal((25L, 4L), await _store.SumTrafficAsync("a", 2, t0.AddSeconds(1), null, ct));
        Assert.Equal((20L, 4L), await _store.SumTrafficAsync("a", 2, t0, "replica-a", ct));
        Assert.Equal((0L, 0L), await _store.SumTrafficAsync("c", 2, t0, null, ct));

        await _store.PruneTrafficAsync(t0.AddSeconds(30), ct);
        Assert.Equal((25L, 4L), await _store.SumTrafficAsync("a", 2, t0.AddSeconds(-60), null, ct));
    }

    [Fact]
    public async Task ARolloutSaveUnderAStaleEpoch_IsRefused_AndWritesNothing()
    {
        var ct = CancellationToken.None;
        await Write(App("a"));
        var ttl = TimeSpan.FromSeconds(10);
        var old = await _store.AcquireLeaseAsync("controllers", "replica-a", ttl, ct);
        var state = new Outpost.Core.Rollouts.RolloutState { Revision = 1, StartedAt = Time.GetUtcNow() };
        var saved = await _store.SaveRolloutAsync("a", state with { Moved = ["edge-1"] }, movesNodes: true, new Fence("controllers", old.Epoch), ct);

        Time.Advance(TimeSpan.FromSeconds(11));
        var current = await _store.AcquireLeaseAsync("controllers", "replica-b", ttl, ct);
        var ex = await Assert.ThrowsAsync<StoreException>(() =>
            _store.SaveRolloutAsync("a", state with { Step = 1, Moved = ["edge-1", "edge-2"] }, movesNodes: true, new Fence("controllers", old.Epoch), ct));
        Assert.Equal(StoreError.Conflict, ex.Error);
        Assert.Contains("epoch 2", ex.Message, StringComparison.Ordinal);
        Assert.Equal(saved, await _store.GetRevisionAsync(ct));
        Assert.Equal(["edge-1"], (await _store.ListRolloutsAsync(ct))["a"].Moved);

        Assert.Equal(saved + 1, await _store.SaveRolloutAsync("a", state with { Step = 1, Moved = ["edge-1", "edge-2"] }, movesNodes: true, new Fence("controllers", current.Epoch), ct));
        await Assert.ThrowsAsync<StoreException>(() => _store.SaveRolloutAsync("a", state, movesNodes: false, new Fence("never-granted", 1), ct));
    }

    [Fact]
    public async Task AuditEntries_WrittenAtOnce_AreEachStoredOnce_AndDurableWhenTheirWriteCompletes()
    {
        var ct = CancellationToken.None;
        var writes = Enumerable.Range(0, 300).Select(i => _store.AppendAuditAsync(
            new AuditEntry(0, Time.GetUtcNow(), "token/t", Roles.Admin, "GET", $"/proxy/nodes/edge-1/{i}", 200, null), ct)).ToList();
        // Each one is readable as soon as its own write has completed, whatever the others do.
        await writes[17];
        Assert.Contains(await _store.ListAuditAsync(0, 1000, ct), e => e.Path == "/proxy/nodes/edge-1/17");
        await Task.WhenAll(writes);

        var stored = await _store.ListAuditAsync(0, 1000, ct);
        Assert.Equal(Enumerable.Range(0, 300).Select(i => $"/proxy/nodes/edge-1/{i}").Order(StringComparer.Ordinal), stored.Select(e => e.Path).Order(StringComparer.Ordinal));
        Assert.Equal(stored.Select(e => e.Id).Distinct().Count(), stored.Count);
    }

    [Fact]
    public async Task Rollouts_AreKeptPerApp_Replaced_ListedBack_AndRefusedForAnAppThatIsGone()
    {
        var ct = CancellationToken.None;
        await Write(App("a"), App("b"));
        var started = Time.GetUtcNow();
        var a = new Outpost.Core.Rollouts.RolloutState { Revision = 2, StableRevision = 1, Steps = 3, StartedAt = started, StepStartedAt = started, Message = "canary" };
        await _store.SaveRolloutAsync("a", a, movesNodes: false, null, ct);
        await _store.SaveRolloutAsync("b", a with { Revision = 1, StableRevision = 0 }, movesNodes: false, null, ct);
        var moved = a with { Step = 1, Moved = ["edge-1", "edge-2"], Paused = true };
        await _store.SaveRolloutAsync("a", moved, movesNodes: true, null, ct);

        var rollouts = await _store.ListRolloutsAsync(ct);
        Assert.Equal(["a", "b"], rollouts.Keys.Order(StringComparer.Ordinal));
        Assert.Equal(moved.ToJson().ToJsonString(), rollouts["a"].ToJson().ToJsonString());
        Assert.Equal(["edge-1", "edge-2"], rollouts["a"].Moved);

        var gone = await Assert.ThrowsAsync<StoreException>(() => _store.SaveRolloutAsync("nope", a, movesNodes: true, null, ct));
        Assert.Equal(StoreError.NotFound, gone.Error);
    }

    [Fact]
    public async Task RevisionOutcomes_AreRecordedPerRevision_AndAMissingRevisionReadsNull()
    {
        var ct = CancellationToken.None;
        await Write(App("a", """{"module":{"digest":"sha256:01"}}"""));
        await Write(App("a", """{"module":{"digest":"sha256:02"}}"""));

        await _store.SetRevisionOutcomeAsync("a", 1, "RolledBack", ct);
        Assert.Equal("RolledBack", (await _store.GetAppRevisionAsync("a", 1, ct))!.Outcome);
        Assert.Equal("", (await _store.GetAppRevisionAsync("a", 2, ct))!.Outcome);
        Assert.Equal("sha256:02", (await _store.GetAppRevisionAsync("a", 2, ct))!.Digest);
        Assert.Null(await _store.GetAppRevisionAsync("a", 3, ct));
        Assert.Null(await _store.GetAppRevisionAsync("nope", 1, ct));
    }

    [Fact]
    public async Task Alerts_AreSavedByRuleAndTarget_Replaced_ListedInOrder_AndDeleted()
    {
        var ct = CancellationToken.None;
        var since = Time.GetUtcNow();
        var pending = new AlertRecord("cpu-high", "node/edge-2", "Pending", 0.93, "cpu at 93 %", since, null, null);
        await _store.SaveAlertAsync(pending, ct);
        await _store.SaveAlertAsync(pending with { Target = "node/edge-1" }, ct);
        await _store.SaveAlertAsync(new AlertRecord("app-5xx", "app/shop", "Firing", 0.2, "20 % 5xx", since, since.AddMinutes(1), null), ct);
        var firing = pending with { State = "Firing", Value = 0.97, FiredAt = since.AddMinutes(5) };
        await _store.SaveAlertAsync(firing, ct);

        var alerts = await _store.ListAlertsAsync(ct);
        Assert.Equal([("app-5xx", "app/shop"), ("cpu-high", "node/edge-1"), ("cpu-high", "node/edge-2")], alerts.Select(a => (a.Rule, a.Target)));
        var read = alerts.Single(a => a.Target == "node/edge-2");
        Assert.Equal(("Firing", 0.97, "cpu at 93 %"), (read.State, read.Value, read.Message));
        Assert.Equal(firing.FiredAt!.Value.ToUnixTimeMilliseconds(), read.FiredAt!.Value.ToUnixTimeMilliseconds());
        Assert.Equal(since.ToUnixTimeMilliseconds(), read.ActiveSince.ToUnixTimeMilliseconds());
        Assert.Null(read.ResolvedAt);

        await _store.DeleteAlertAsync("cpu-high", "node/edge-2", ct);
        await _store.DeleteAlertAsync("cpu-high", "node/none", ct); // nothing to delete: no error
        Assert.Equal(["app/shop", "node/edge-1"], (await _store.ListAlertsAsync(ct)).Select(a => a.Target));
    }

    [Fact]
    public async Task Events_AreListedAfterAnId_InOrder_AndByObjectName()
    {
        var ct = CancellationToken.None;
        for (var i = 0; i < 5; i++)
        {
            await _store.AppendEventAsync(new EventRecord(0, Time.GetUtcNow().AddSeconds(i), "Node", i % 2 == 0 ? "edge-1" : "edge-2", "Normal", "NodeReady", $"event {i}"), ct);
        }

        var all = await _store.ListEventsAsync(0, 100, null, ct);
        Assert.Equal(["event 0", "event 1", "event 2", "event 3", "event 4"], all.Select(e => e.Message));
        Assert.True(all.Zip(all.Skip(1)).All(p => p.First.Id < p.Second.Id));
        Assert.Equal(["event 3", "event 4"], (await _store.ListEventsAsync(all[2].Id, 100, null, ct)).Select(e => e.Message));
        Assert.Equal(["event 0"], (await _store.ListEventsAsync(0, 1, null, ct)).Select(e => e.Message));
        Assert.Equal(["event 1", "event 3"], (await _store.ListEventsAsync(0, 100, "edge-2", ct)).Select(e => e.Message));
        var first = all[0];
        Assert.Equal(("Node", "edge-1", "Normal", "NodeReady"), (first.Kind, first.Name, first.Type, first.Reason));
    }

    [Fact]
    public async Task Missing_Things_AreSaidSo_NotInvented()
    {
        var ct = CancellationToken.None;
        Assert.Null(await _store.GetBlobSizeAsync("sha256:none", ct));
        Assert.Null(await _store.GetTokenAsync("none", ct));
        Assert.False(await _store.TryUseTokenAsync("none", ct));
        Assert.Null(await _store.GetNodeInventoryAsync("none", ct));

        var issued = TokenCodec.Issue(TokenKind.Api, Time.GetUtcNow());
        await _store.CreateTokenAsync(issued.Record, ct);
        var twice = await Assert.ThrowsAsync<StoreException>(() => _store.CreateTokenAsync(issued.Record, ct));
        Assert.Equal(StoreError.AlreadyExists, twice.Error);
    }

    [Fact]
    public async Task SmallWritesAtOnce_EachIsApplied_AndOneTheStoreRefusesFailsAlone()
    {
        // A change acked by a whole fleet is thousands of status and inventory writes at once; a
        // store may put them in shared transactions, but each write stands or falls on its own.
        var ct = CancellationToken.None;
        var names = Enumerable.Range(0, 40).Select(i => $"a{i}").ToArray();
        await Write([.. names.Select(n => App(n))]);
        var issued = TokenCodec.Issue(TokenKind.Api, Time.GetUtcNow());
        await _store.CreateTokenAsync(issued.Record, ct);

        var statuses = names.Select(n => Task.Run(() => _store.UpdateStatusAsync("Application", n, StatusOf(n), ct))).ToList();
        var inventories = names.Select((n, i) => Task.Run(() => _store.SaveNodeInventoryAsync($"edge-{i}", new NodeInventory(i + 1, new Dictionary<string, long> { [n] = i }), ct))).ToList();
        var missing = Task.Run(() => _store.UpdateStatusAsync("Application", "nope", "{}", ct));
        var duplicate = Task.Run(() => _store.CreateTokenAsync(issued.Record, ct));
        await Task.WhenAll(statuses.Concat(inventories));

        Assert.Equal(StoreError.NotFound, (await Assert.ThrowsAsync<StoreException>(() => missing)).Error);
        Assert.Equal(StoreError.AlreadyExists, (await Assert.ThrowsAsync<StoreException>(() => duplicate)).Error);
        foreach (var (name, i) in names.Select((n, i) => (n, i)))
        {
            Assert.Equal(StatusOf(name), (await _store.GetAsync("Application", name, ct))!.StatusJson);
            var inventory = await _store.GetNodeInventoryAsync($"edge-{i}", ct);
            Assert.Equal(i + 1, inventory!.Revision);
            Assert.Equal(i, inventory.Resources[name]);
        }

        Assert.Null(await _store.GetAsync("Application", "nope", ct));

        static string StatusOf(string name) => "{\"ready\":\"" + name + "\"}";
    }

    [Fact]
    public async Task ApiTokens_KeepTheirRole()
    {
        var viewer = TokenCodec.Issue(TokenKind.Api, Time.GetUtcNow(), role: Roles.Viewer);
        await _store.CreateTokenAsync(viewer.Record, CancellationToken.None);

        Assert.Equal(Roles.Viewer, (await _store.GetTokenAsync(viewer.Record.Id, CancellationToken.None))!.Role);
    }

    [Fact]
    public async Task NodeCertificates_AreCurrentUntilTheirNodeIsDeleted()
    {
        await Write(new ResourceWrite { Op = WriteOp.Upsert, Kind = "Node", Name = "edge-1" });
        await _store.RecordNodeCertificateAsync("edge-1", "0A1B", Time.GetUtcNow().AddDays(30), CancellationToken.None);

        Assert.True(await _store.IsNodeCertificateCurrentAsync("edge-1", "0A1B", CancellationToken.None));
        Assert.False(await _store.IsNodeCertificateCurrentAsync("edge-2", "0A1B", CancellationToken.None));

        await Write(new ResourceWrite { Op = WriteOp.Delete, Kind = "Node", Name = "edge-1" });
        Assert.False(await _store.IsNodeCertificateCurrentAsync("edge-1", "0A1B", CancellationToken.None));
    }

    private IngestRecord Rec(long sequence, string topic = "t", string payload = "p") =>
        new(sequence, topic, "app", System.Text.Encoding.UTF8.GetBytes(payload + sequence), Time.GetUtcNow());

    [Fact]
    public async Task Ingest_IsIdempotentOnNodeAndSequence()
    {
        var first = await _store.IngestAsync("edge-1", [Rec(1), Rec(2), Rec(3)], CancellationToken.None);
        var again = await _store.IngestAsync("edge-1", [Rec(2), Rec(3), Rec(4)], CancellationToken.None);
        var otherNode = await _store.IngestAsync("edge-2", [Rec(1)], CancellationToken.None);

        Assert.Equal(new IngestResult(3, 0), first);
        Assert.Equal(new IngestResult(1, 2), again);
        Assert.Equal(new IngestResult(1, 0), otherNode);
        var records = await _store.ReadRecordsAsync("t", 0, 100, null, CancellationToken.None);
        Assert.Equal(5, records.Count);
        Assert.Equal([1L, 2L, 3L, 4L], records.Where(r => r.Node == "edge-1").Select(r => r.Sequence));
    }

    [Fact]
    public async Task Ingest_FromManyNodesAtOnce_CountsEachCallsOwnRecords_AndKeepsEachNodesOrder()
    {
        // Batches that arrive together may share a commit: each call still learns what it stored,
        // and a node's records keep its sequence order in the cursors.
        const int Nodes = 24;
        const int Batches = 5;
        var results = await Task.WhenAll(Enumerable.Range(0, Nodes).Select(n => Task.Run(async () =>
        {
            var node = $"edge-{n}";
            var own = new List<(IngestResult Result, int Sent)>();
            for (var b = 0; b < Batches; b++)
            {
                // Each batch repeats the last record of the one before (a resend after a lost ack).
                var records = Enumerable.Range(b * 3, 4).Select(i => Rec(i)).ToList();
                own.Add((await _store.IngestAsync(node, records, CancellationToken.None), records.Count));
            }

            return own;
        })));

        foreach (var own in results)
        {
            Assert.Equal(new IngestResult(4, 0), own[0].Result);
            Assert.All(own.Skip(1), r => Assert.Equal(new IngestResult(3, 1), r.Result));
        }

        var records = await _store.ReadRecordsAsync("t", 0, 10_000, null, CancellationToken.None);
        Assert.Equal(Nodes * (Batches * 3 + 1), records.Count);
        foreach (var node in records.GroupBy(r => r.Node))
        {
            Assert.Equal(Enumerable.Range(0, Batches * 3 + 1).Select(i => (long)i), node.Select(r => r.Sequence));
        }
    }

    [Fact]
    public async Task ReadRecords_PagesByCursorInOrder_AndFiltersByTopicAndNode()
    {
        await _store.IngestAsync("edge-1", [Rec(1, "a"), Rec(2, "b"), Rec(3, "a")], CancellationToken.None);
        await _store.IngestAsync("edge-2", [Rec(1, "a")], CancellationToken.None);

        var page1 = await _store.ReadRecordsAsync("a", 0, 2, null, CancellationToken.None);
        var page2 = await _store.ReadRecordsAsync("a", page1[^1].Cursor, 2, null, CancellationToken.None);
        var edge2 = await _store.ReadRecordsAsync("a", 0, 10, "edge-2", CancellationToken.None);

        Assert.Equal([("edge-1", 1L), ("edge-1", 3L)], page1.Select(r => (r.Node, r.Sequence)));
        Assert.Equal([("edge-2", 1L)], page2.Select(r => (r.Node, r.Sequence)));
        Assert.Single(edge2);
        Assert.Equal("p1", System.Text.Encoding.UTF8.GetString(edge2[0].Payload));
        Assert.True(page1[0].Cursor < page1[1].Cursor);
    }

    [Fact]
    public async Task ListTopics_CountsRecordsBytesAndNodes()
    {
        await _store.IngestAsync("edge-1", [Rec(1, "a", "xx"), Rec(2, "b")], CancellationToken.None);
        await _store.IngestAsync("edge-2", [Rec(1, "a", "yy")], CancellationToken.None);

        var topics = await _store.ListTopicsAsync(CancellationToken.None);

        Assert.Equal(["a", "b"], topics.Select(t => t.Topic));
        Assert.Equal(2, topics[0].Records);
        Assert.Equal(6, topics[0].Bytes); // "xx1" + "yy1"
        Assert.Equal(2, topics[0].Nodes);
    }

    [Fact]
    public async Task Compaction_DropsOldChanges_KeepsTheRevision_AndRecordsTheFloor()
    {
        await Write(App("a"), App("b"), App("c"), App("d"));

        await _store.CompactChangesAsync(2, CancellationToken.None);

        Assert.Equal(2, await _store.GetCompactedRevisionAsync(CancellationToken.None));
        Assert.Equal([3L, 4L], (await _store.ListChangesAsync(0, 100, CancellationToken.None)).Select(c => c.Revision));
        Assert.Equal(4, await _store.GetRevisionAsync(CancellationToken.None));
        await _store.CompactChangesAsync(100, CancellationToken.None);
        Assert.Equal(4, await _store.GetRevisionAsync(CancellationToken.None)); // the newest change stays
        Assert.Equal(5, (await Write(App("e")))[0].Resource.ResourceVersion);
    }

    [Fact]
    public async Task NodeInventory_RoundTrips()
    {
        Assert.Null(await _store.GetNodeInventoryAsync("edge-1", CancellationToken.None));

        await _store.SaveNodeInventoryAsync("edge-1", new NodeInventory(7, new Dictionary<string, long> { ["Application/a"] = 3 }), CancellationToken.None);
        await _store.SaveNodeInventoryAsync("edge-1", new NodeInventory(9, new Dictionary<string, long> { ["Application/a"] = 8, ["ConfigSet/c"] = 9 }), CancellationToken.None);

        var inventory = await _store.GetNodeInventoryAsync("edge-1", CancellationToken.None);
        Assert.Equal(9, inventory!.Revision);
        Assert.Equal(8, inventory.Resources["Application/a"]);
        Assert.Equal(2, inventory.Resources.Count);
    }

    [Fact]
    public async Task ConcurrentWriters_GetDistinctRevisions()
    {
        var writes = Enumerable.Range(0, 20).Select(i => Write(App($"app-{i}")));

        var results = await Task.WhenAll(writes);

        var revisions = results.Select(r => r[0].Resource.ResourceVersion).Order().ToArray();
        Assert.Equal(Enumerable.Range(1, 20).Select(i => (long)i), revisions);
    }

    private static BucketWrite KvW(string key, long wall, string origin, string? value, HlcTimestamp? @base = null) =>
        new(key, new VersionedValue(value is null ? null : System.Text.Encoding.UTF8.GetBytes(value), new HlcTimestamp(wall, 0, origin)), @base);

    private static string? Text(BucketEntry? entry) => entry?.Version.Value is { } v ? System.Text.Encoding.UTF8.GetString(v) : null;

    [Fact]
    public async Task MergeBucket_StoresWinnersWithRevisions_IsIdempotent_AndLogsConflicts()
    {
        var ct = CancellationToken.None;
        var first = await _store.MergeBucketAsync("settings", "", ConflictPolicy.Lww, [KvW("mode", 100, "cloud", "eco"), KvW("level", 100, "cloud", "3")], ct);
        Assert.Equal(new BucketMergeResult(2, 0, 0, 0, 2), first);

        // The same batch again (a redelivery) changes nothing.
        var again = await _store.MergeBucketAsync("settings", "", ConflictPolicy.Lww, [KvW("mode", 100, "cloud", "eco"), KvW("level", 100, "cloud", "3")], ct);
        Assert.Equal(new BucketMergeResult(0, 0, 2, 0, 2), again);

        // An edge write made offline, older than the cloud's: it loses and is logged.
        var offline = await _store.MergeBucketAsync("settings", "", ConflictPolicy.Lww, [KvW("mode", 50, "edge-1", "turbo")], ct);
        Assert.Equal(new BucketMergeResult(0, 1, 0, 1, 2), offline);
        Assert.Equal("eco", Text(await _store.GetBucketEntryAsync("settings", "", "mode", ct)));

        // An edge edit of the value it had received: an overwrite, not a conflict.
        var edit = await _store.MergeBucketAsync("settings", "", ConflictPolicy.Lww, [KvW("mode", 200, "edge-1", "quiet", new HlcTimestamp(100, 0, "cloud"))], ct);
        Assert.Equal(new BucketMergeResult(1, 0, 0, 0, 3), edit);
        var entry = await _store.GetBucketEntryAsync("settings", "", "mode", ct);
        Assert.Equal("quiet", Text(entry));
        Assert.Equal(3, entry!.Revision);
        Assert.Equal(new HlcTimestamp(100, 0, "cloud"), entry.Base);

        var conflict = Assert.Single(await _store.ListBucketConflictsAsync("settings", 0, 100, ct));
        Assert.Equal("mode", conflict.Key);
        Assert.Equal("eco", System.Text.Encoding.UTF8.GetString(conflict.Winner.Value!));
        Assert.Equal("turbo", System.Text.Encoding.UTF8.GetString(conflict.Loser.Value!));
        Assert.Equal("edge-1", conflict.Loser.Stamp.Origin);
        Assert.Equal(3, await _store.GetBucketRevisionAsync(ct));
    }

    [Fact]
    public async Task BucketChanges_AreInRevisionOrder_WithDeletions_PerScope()
    {
        var ct = CancellationToken.None;
        await _store.MergeBucketAsync("b", "", ConflictPolicy.Lww, [KvW("x", 1, "cloud", "1"), KvW("y", 2, "cloud", "2")], ct);
        await _store.MergeBucketAsync("b", "edge-1", ConflictPolicy.Lww, [KvW("x", 3, "edge-1", "mine")], ct);
        await _store.MergeBucketAsync("b", "", ConflictPolicy.Lww, [KvW("x", 4, "cloud", null)], ct);

        var changes = await _store.ListBucketChangesAsync("b", "", 0, 100, ct);
        Assert.Equal(["y", "x"], changes.Select(c => c.Key));
        Assert.Null(changes[1].Version.Value);
        Assert.Equal([4L], (await _store.ListBucketChangesAsync("b", "", 2, 100, ct)).Select(c => c.Revision));

        // Listing leaves deletions out; across scopes it pages by (scope, key).
        Assert.Equal(["y"], (await _store.ListBucketEntriesAsync("b", "", "", 100, ct)).Select(e => e.Key));
        var all = await _store.ListBucketEntriesAsync("b", null, "", 1, ct);
        Assert.Equal(("", "y"), (all[0].Scope, all[0].Key));
        var next = await _store.ListBucketEntriesAsync("b", null, "\ny", 1, ct);
        Assert.Equal(("edge-1", "x"), (next[0].Scope, next[0].Key));
        Assert.Empty(await _store.ListBucketEntriesAsync("b", null, "edge-1\nx", 1, ct));
    }

    [Fact]
    public async Task DeletingABucket_DeletesItsData()
    {
        var ct = CancellationToken.None;
        await _store.WriteAsync([new ResourceWrite { Op = WriteOp.Upsert, Kind = "Bucket", Name = "b", SpecJson = """{"direction":"two-way"}""" }], ct);
        await _store.MergeBucketAsync("b", "", ConflictPolicy.Lww, [KvW("x", 2, "cloud", "1")], ct);
        await _store.MergeBucketAsync("b", "", ConflictPolicy.Lww, [KvW("x", 1, "edge-1", "0")], ct);
        await _store.MergeBucketAsync("other", "", ConflictPolicy.Lww, [KvW("x", 1, "cloud", "kept")], ct);

        await _store.WriteAsync([new ResourceWrite { Op = WriteOp.Delete, Kind = "Bucket", Name = "b" }], ct);

        Assert.Null(await _store.GetBucketEntryAsync("b", "", "x", ct));
        Assert.Empty(await _store.ListBucketConflictsAsync("b", 0, 10, ct));
        Assert.Equal("kept", Text(await _store.GetBucketEntryAsync("other", "", "x", ct)));
    }

    [Fact]
    public async Task LogLines_AreStoredOncePerStreamAndSequence_ListedNewestInTimeOrder_AndFollowedByCursor()
    {
        var ct = CancellationToken.None;
        var t0 = Time.GetUtcNow();
        LogRecord Line(string node, string stream, long seq, int second, string app = "hello") =>
            new(0, node, stream, seq, t0.AddSeconds(second), "info", app, 1, $"{node} {seq}");

        var first = await _store.IngestLogsAsync([Line("edge-1", "s1", 1, 0), Line("edge-1", "s1", 2, 2), Line("edge-2", "s2", 1, 1)], ct);
        Assert.Equal(new IngestResult(3, 0), first);
        // Sent again after a cut, plus one new line and a reset node's fresh stream reusing sequence 1.
        var again = await _store.IngestLogsAsync([Line("edge-1", "s1", 2, 2), Line("edge-1", "s1", 3, 3), Line("edge-1", "s9", 1, 4, app: "")], ct);
        Assert.Equal(new IngestResult(2, 1), again);

        var (lines, cursor) = await _store.ListLogsAsync(new LogQuery(App: "hello"), ct);
        Assert.Equal(["edge-1 1", "edge-2 1", "edge-1 2", "edge-1 3"], lines.Select(l => l.Message));
        (lines, _) = await _store.ListLogsAsync(new LogQuery(App: "hello", Limit: 2), ct);
        Assert.Equal(["edge-1 2", "edge-1 3"], lines.Select(l => l.Message)); // the newest two, oldest first
        (lines, _) = await _store.ListLogsAsync(new LogQuery(Node: "edge-1", AgentOnly: true), ct);
        Assert.Equal("edge-1 1", Assert.Single(lines).Message);
        Assert.Equal("s9", lines[0].Stream);

        await _store.IngestLogsAsync([Line("edge-2", "s2", 2, 5)], ct);
        var (followed, next) = await _store.ListLogsAsync(new LogQuery(App: "hello", AfterId: cursor), ct);
        Assert.Equal("edge-2 2", Assert.Single(followed).Message);
        (followed, var same) = await _store.ListLogsAsync(new LogQuery(App: "hello", AfterId: next), ct);
        Assert.Empty(followed);
        Assert.Equal(next, same);

        await _store.PruneLogsAsync(t0.AddSeconds(3), ct);
        (lines, _) = await _store.ListLogsAsync(new LogQuery(), ct);
        Assert.Equal(["edge-1 3", "edge-1 1", "edge-2 2"], lines.Select(l => l.Message));
    }

    [Fact]
    public async Task MetricMinutes_AreReplacedWhole_ListedFromATime_AndPruned()
    {
        var ct = CancellationToken.None;
        var minute = Time.GetUtcNow();
        var stats = new Core.Metrics.RequestStats { Requests = 10, ServerErrors = 2, LatencySumSeconds = 0.25, MemoryPeakBytes = 65536 };
        stats.AddBuckets([0, 3, 7]);
        var usage = new Core.Metrics.NodeUsageSample(0.25, 2, 1024, 4096, 10, 100, 5, 2048, 0.01, 3);
        await _store.SaveMetricMinutesAsync([new("hello", 1, "edge-1", minute, stats)], [new("edge-1", minute, usage)], ct);
        stats.Requests = 12; // the open minute written again with more in it
        await _store.SaveMetricMinutesAsync([new("hello", 1, "edge-1", minute, stats), new("hello", 1, "edge-1", minute.AddMinutes(1), new() { Requests = 1 })], [], ct);

        var apps = await _store.ListAppMinutesAsync(minute, "hello", ct);
        Assert.Equal([12L, 1], apps.Select(a => a.Stats.Requests));
        Assert.Equal([0L, 3, 7], apps[0].Stats.TrimmedBuckets());
        Assert.Equal((2L, 0.25, 65536L), (apps[0].Stats.ServerErrors, apps[0].Stats.LatencySumSeconds, apps[0].Stats.MemoryPeakBytes));
        Assert.Empty(await _store.ListAppMinutesAsync(minute, "other", ct));
        Assert.Equal(usage, Assert.Single(await _store.ListNodeMinutesAsync(minute, null, ct)).Usage);

        await _store.PruneMetricsAsync(minute.AddMinutes(1), ct);
        Assert.Equal(1, Assert.Single(await _store.ListAppMinutesAsync(minute, null, ct)).Stats.Requests);
        Assert.Empty(await _store.ListNodeMinutesAsync(minute, null, ct));
    }
}
