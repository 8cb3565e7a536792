using Outpost.Core.Resources;
using Outpost.Core.Tokens;

namespace Outpost.Core.Store;

/// <summary>
/// Everything the control plane keeps. SQLite implements it for one server and PostgreSQL
/// for replicas; both pass one conformance suite. No SQL lives outside an implementation.
/// </summary>
public interface IControlPlaneStore : IAsyncDisposable
{
    /// <summary>Creates or migrates the schema; safe to call on every start.</summary>
    Task InitializeAsync(CancellationToken cancellationToken);

    /// <summary>The global revision: the number of changes ever written.</summary>
    Task<long> GetRevisionAsync(CancellationToken cancellationToken);

    /// <summary>
    /// Moves to the global revision once a change is committed and visible to readers: this
    /// store's own writes at once, another replica's as soon as the store hears of them (and
    /// within a few seconds even when a notification is lost). Starts at the revision
    /// <see cref="InitializeAsync"/> found.
    /// </summary>
    ChangeFeed Changes { get; }

    /// <summary>Moves to the bucket revision (<see cref="GetBucketRevisionAsync"/>) as <see cref="Changes"/> does to the global one.</summary>
    ChangeFeed BucketChanges { get; }

    Task<StoredResource?> GetAsync(string kind, string name, CancellationToken cancellationToken);

    /// <summary>Lists a kind, with the revision the list is consistent with.</summary>
    Task<ResourcePage> ListAsync(string kind, CancellationToken cancellationToken);

    /// <summary>
    /// Lists the resources of a kind whose labels hold every pair of <paramref name="labelSelector"/>
    /// (all of them, when it is empty), with the revision the list is consistent with. What
    /// placement asks of a fleet's nodes: the nodes an app selects, without reading (and the
    /// server without holding) the statuses of the thousands it does not.
    /// </summary>
    Task<ResourcePage> ListAsync(string kind, IReadOnlyDictionary<string, string> labelSelector, CancellationToken cancellationToken);

    /// <summary>
    /// Applies every write in one transaction, or none of them (the first failure throws
    /// <see cref="StoreException"/>). Each effective change takes the next revision; a write
    /// that changes nothing takes none.
    /// </summary>
    Task<IReadOnlyList<WriteResult>> WriteAsync(IReadOnlyList<ResourceWrite> writes, CancellationToken cancellationToken);

    /// <summary>Replaces a resource's status without a new revision: status is reported state, not desired state.</summary>
    Task UpdateStatusAsync(string kind, string name, string statusJson, CancellationToken cancellationToken);

    /// <summary>
    /// Sets top-level fields of a resource's status to the values in <paramref name="fields"/>,
    /// keeping its other fields (a resource without a status gets <paramref name="fields"/>):
    /// one write, no read of the status first, and no revision. For reports that change a field
    /// or two of a large status, such as a node acking a revision.
    /// </summary>
    Task SetStatusFieldsAsync(string kind, string name, System.Text.Json.Nodes.JsonObject fields, CancellationToken cancellationToken);

    /// <summary>The change log after a revision, oldest first, for incremental sync.</summary>
    Task<IReadOnlyList<ResourceChange>> ListChangesAsync(long afterRevision, int limit, CancellationToken cancellationToken);

    /// <summary>
    /// Drops change-log entries through a revision. A node that acked a revision at or below
    /// the compacted one gets a full snapshot on reconnect instead of a delta.
    /// </summary>
    Task CompactChangesAsync(long throughRevision, CancellationToken cancellationToken);

    /// <summary>The highest revision whose change-log entry was compacted away (0: nothing was).</summary>
    Task<long> GetCompactedRevisionAsync(CancellationToken cancellationToken);

    /// <summary>What a node holds as of a revision it acked: "Kind/name" → resourceVersion.</summary>
    Task<NodeInventory?> GetNodeInventoryAsync(string node, CancellationToken cancellationToken);

    Task SaveNodeInventoryAsync(string node, NodeInventory inventory, CancellationToken cancellationToken);

    /// <summary>Stores content under its digest; true when it was new. The caller has verified the digest.</summary>
    Task<bool> PutBlobAsync(string digest, ReadOnlyMemory<byte> content, CancellationToken cancellationToken);

    /// <summary>The blob's size, or null when the store does not hold it.</summary>
    Task<long?> GetBlobSizeAsync(string digest, CancellationToken cancellationToken);

    /// <summary>Reads up to buffer.Length bytes at offset; returns how many were read (0 at the end).</summary>
    Task<int> ReadBlobAsync(string digest, long offset, Memory<byte> buffer, CancellationToken cancellationToken);

    /// <summary>Points an image repository's tag at a manifest (a blob), replacing what it pointed at.</summary>
    Task SetImageTagAsync(string repository, string tag, string digest, CancellationToken cancellationToken);

    /// <summary>The manifest digest a tag points at, or null.</summary>
    Task<string?> GetImageTagAsync(string repository, string tag, CancellationToken cancellationToken);

    /// <summary>The tags of one repository, or of all when <paramref name="repository"/> is null, by repository then tag.</summary>
    Task<IReadOnlyList<ImageTag>> ListImageTagsAsync(string? repository, CancellationToken cancellationToken);

    /// <summary>Removes a tag (the manifest blob stays); false if there was none.</summary>
    Task<bool> DeleteImageTagAsync(string repository, string tag, CancellationToken cancellationToken);

    /// <summary>
    /// Stores a node's records durably in one transaction. Idempotent on (node, sequence): a
    /// record delivered again is counted as a duplicate and not stored twice.
    /// </summary>
    Task<IngestResult> IngestAsync(string node, IReadOnlyList<IngestRecord> records, CancellationToken cancellationToken);

    /// <summary>Records of a topic after a cursor, in cursor order (per node, that is sequence order).</summary>
    Task<IReadOnlyList<StoredRecord>> ReadRecordsAsync(string topic, long afterCursor, int limit, string? node, CancellationToken cancellationToken);

    /// <summary>Every topic with its record count, size and how many nodes published to it.</summary>
    Task<IReadOnlyList<TopicSummary>> ListTopicsAsync(CancellationToken cancellationToken);

    /// <summary>
    /// Merges writes into one keyspace of a bucket in one durable transaction, by the
    /// bucket's policy (<see cref="Sync.BucketMerge.Decide"/>): each write that wins takes the
    /// next bucket revision; each conflict's loser goes to the conflict log. Idempotent: a
    /// write merged again is a duplicate.
    /// </summary>
    Task<BucketMergeResult> MergeBucketAsync(string bucket, string scope, Sync.ConflictPolicy policy, IReadOnlyList<Sync.BucketWrite> writes, CancellationToken cancellationToken);

    /// <summary>A key's current entry (deletions included), or null when it was never written.</summary>
    Task<BucketEntry?> GetBucketEntryAsync(string bucket, string scope, string key, CancellationToken cancellationToken);

    /// <summary>Live entries in key order after a key, in one scope or (null) every scope; deletions are left out.</summary>
    Task<IReadOnlyList<BucketEntry>> ListBucketEntriesAsync(string bucket, string? scope, string afterKey, int limit, CancellationToken cancellationToken);

    /// <summary>Entries of a scope changed after a bucket revision, oldest change first, deletions included: what a replica still needs.</summary>
    Task<IReadOnlyList<BucketEntry>> ListBucketChangesAsync(string bucket, string scope, long afterRevision, int limit, CancellationToken cancellationToken);

    /// <summary>The conflict log of a bucket after an id, oldest first.</summary>
    Task<IReadOnlyList<BucketConflict>> ListBucketConflictsAsync(string bucket, long afterId, int limit, CancellationToken cancellationToken);

    /// <summary>The latest bucket revision (0: no bucket was ever written).</summary>
    Task<long> GetBucketRevisionAsync(CancellationToken cancellationToken);

    Task CreateTokenAsync(TokenRecord token, CancellationToken cancellationToken);

    Task<TokenRecord?> GetTokenAsync(string id, CancellationToken cancellationToken);

    Task<IReadOnlyList<TokenRecord>> ListTokensAsync(CancellationToken cancellationToken);

    /// <summary>
    /// An Application's revisions, newest first (at most <paramref name="limit"/>). The store records
    /// one in the same transaction as every write that creates an Application or changes its spec;
    /// the revision number is the generation.
    /// </summary>
    Task<IReadOnlyList<AppRevision>> ListAppRevisionsAsync(string app, int limit, CancellationToken cancellationToken);

    /// <summary>One revision of an Application, or null when it is not kept.</summary>
    Task<AppRevision?> GetAppRevisionAsync(string app, long revision, CancellationToken cancellationToken);

    /// <summary>Records how a revision's rollout ended.</summary>
    Task SetRevisionOutcomeAsync(string app, long revision, string outcome, CancellationToken cancellationToken);

    /// <summary>Drops all but the newest <paramref name="keep"/> revisions of every Application, never one a rollout still uses.</summary>
    Task PruneAppRevisionsAsync(int keep, CancellationToken cancellationToken);

    /// <summary>Records an event (its Id is assigned).</summary>
    Task AppendEventAsync(EventRecord entry, CancellationToken cancellationToken);

    /// <summary>Events after an id, oldest first, optionally of one object name.</summary>
    Task<IReadOnlyList<EventRecord>> ListEventsAsync(long afterId, int limit, string? name, CancellationToken cancellationToken);

    /// <summary>Writes whole minutes of app and node metrics, replacing any earlier write of the same minute.</summary>
    Task SaveMetricMinutesAsync(IReadOnlyCollection<Metrics.AppMinute> apps, IReadOnlyCollection<Metrics.NodeMinute> nodes, CancellationToken cancellationToken);

    /// <summary>App metric minutes from <paramref name="since"/> on, optionally of one app.</summary>
    Task<IReadOnlyList<Metrics.AppMinute>> ListAppMinutesAsync(DateTimeOffset since, string? app, CancellationToken cancellationToken);

    /// <summary>Node metric minutes from <paramref name="since"/> on, optionally of one node.</summary>
    Task<IReadOnlyList<Metrics.NodeMinute>> ListNodeMinutesAsync(DateTimeOffset since, string? node, CancellationToken cancellationToken);

    /// <summary>Drops metric minutes before a time (retention).</summary>
    Task PruneMetricsAsync(DateTimeOffset before, CancellationToken cancellationToken);

    /// <summary>Stores a node's log lines; a (node, stream, sequence) already stored is a duplicate.</summary>
    Task<IngestResult> IngestLogsAsync(IReadOnlyCollection<LogRecord> lines, CancellationToken cancellationToken);

    /// <summary>Log lines as the query asks, and the id to follow on from (the newest stored when it ran).</summary>
    Task<(IReadOnlyList<LogRecord> Lines, long Cursor)> ListLogsAsync(LogQuery query, CancellationToken cancellationToken);

    /// <summary>Drops log lines older than a time (retention).</summary>
    Task PruneLogsAsync(DateTimeOffset before, CancellationToken cancellationToken);

    /// <summary>Every alert the rules hold (pending, firing or lately resolved).</summary>
    Task<IReadOnlyList<AlertRecord>> ListAlertsAsync(CancellationToken cancellationToken);

    /// <summary>Writes an alert's state (by rule and target).</summary>
    Task SaveAlertAsync(AlertRecord alert, CancellationToken cancellationToken);

    /// <summary>Forgets an alert.</summary>
    Task DeleteAlertAsync(string rule, string target, CancellationToken cancellationToken);

    /// <summary>Every Application's rollout state, by app name.</summary>
    Task<IReadOnlyDictionary<string, Rollouts.RolloutState>> ListRolloutsAsync(CancellationToken cancellationToken);

    /// <summary>
    /// Saves an app's rollout state. When it changes what a node runs (<paramref name="movesNodes"/>),
    /// the save is a change of the store's revision, so every sync session sees it and a node that
    /// acked a revision resumes from it; returns that revision, else 0. Fails when the app is gone.
    /// </summary>
    /// <remarks>With a <paramref name="fence"/>, the save is refused (<see cref="StoreError.Conflict"/>, nothing written)
    /// unless that lease's epoch is still the fence's: a deposed leader cannot move nodes. With
    /// <paramref name="unchangedFrom"/>, it is refused the same way unless the stored state is still
    /// that one: two servers that read, change and save the same rollout (the leader advancing it,
    /// another pausing it) cannot undo each other's write.</remarks>
    Task<long> SaveRolloutAsync(string app, Rollouts.RolloutState state, bool movesNodes, Fence? fence, CancellationToken cancellationToken, Rollouts.RolloutState? unchangedFrom = null);

    /// <summary>
    /// Takes or renews lease <paramref name="name"/> for <paramref name="holder"/> until now + ttl.
    /// It is granted when nobody holds it, when its holder's time has run out, or to the holder
    /// itself; a grant to anyone but the holder of an unexpired lease takes the next epoch (a
    /// fencing token: writes made under an older epoch are refused). Returns the lease as it
    /// stands after the call: another holder's when refused.
    /// </summary>
    Task<LeaderLease> AcquireLeaseAsync(string name, string holder, TimeSpan ttl, CancellationToken cancellationToken);

    /// <summary>Ends <paramref name="holder"/>'s lease now (a clean stop), so the next holder need not wait it out; it stays listed, run out at this time.</summary>
    Task ReleaseLeaseAsync(string name, string holder, CancellationToken cancellationToken);

    /// <summary>Every lease whose name starts with <paramref name="prefix"/>, expired ones included.</summary>
    Task<IReadOnlyList<LeaderLease>> ListLeasesAsync(string prefix, CancellationToken cancellationToken);

    /// <summary>Forgets the leases under <paramref name="prefix"/> that ran out before <paramref name="expiredBefore"/>; returns how many.</summary>
    Task<int> DeleteLeasesAsync(string prefix, DateTimeOffset expiredBefore, CancellationToken cancellationToken);

    /// <summary>
    /// Writes what replicas saw of nodes' sync streams, in one transaction. A row is replaced by
    /// a write of the same replica and session, or by a session that began later
    /// (<see cref="NodePresence.Since"/>): a late word about an old stream never hides a newer one.
    /// </summary>
    Task SavePresenceAsync(IReadOnlyCollection<NodePresence> presences, CancellationToken cancellationToken);

    /// <summary>Every node's presence as last written (deleting a node deletes its row).</summary>
    Task<IReadOnlyList<NodePresence>> ListPresenceAsync(CancellationToken cancellationToken);

    /// <summary>Keeps requests and 5xx answers that nodes reported for app revisions (the rollout gates' windows), as replicas received them.</summary>
    Task AppendTrafficAsync(IReadOnlyCollection<TrafficSample> samples, CancellationToken cancellationToken);

    /// <summary>
    /// The requests and 5xx answers reported for one app revision, received at or after
    /// <paramref name="since"/> by any replica but <paramref name="exceptReplica"/> (null: by all).
    /// </summary>
    Task<(long Requests, long ServerErrors)> SumTrafficAsync(string app, long revision, DateTimeOffset since, string? exceptReplica, CancellationToken cancellationToken);

    /// <summary>Drops samples received before <paramref name="before"/>.</summary>
    Task PruneTrafficAsync(DateTimeOffset before, CancellationToken cancellationToken);

    /// <summary>Appends to the audit log (the id is assigned).</summary>
    Task AppendAuditAsync(AuditEntry entry, CancellationToken cancellationToken);

    /// <summary>The audit log after an id, oldest first.</summary>
    Task<IReadOnlyList<AuditEntry>> ListAuditAsync(long afterId, int limit, CancellationToken cancellationToken);

    /// <summary>Records a certificate issued to a node; only recorded certificates of existing nodes authenticate.</summary>
    Task RecordNodeCertificateAsync(string node, string serial, DateTimeOffset notAfter, CancellationToken cancellationToken);

    /// <summary>True when the serial was issued to this node and the node has not been deleted since.</summary>
    Task<bool> IsNodeCertificateCurrentAsync(string node, string serial, CancellationToken cancellationToken);

    /// <summary>Counts one use of a token, atomically; false when it has no uses left.</summary>
    Task<bool> TryUseTokenAsync(string id, CancellationToken cancellationToken);

    /// <summary>Removes a token; true when it existed.</summary>
    Task<bool> DeleteTokenAsync(string id, CancellationToken cancellationToken);
}

public sealed record ResourcePage(long Revision, IReadOnlyList<StoredResource> Items);

/// <summary>A lease as the store holds it: who, under which epoch, until when.</summary>
public sealed record LeaderLease(string Name, string Holder, long Epoch, DateTimeOffset ExpiresAt);

/// <summary>A node's report of an app revision's requests and 5xx answers, received by <paramref name="Replica"/> at <paramref name="At"/>.</summary>
public sealed record TrafficSample(string App, long Revision, string Node, string Replica, DateTimeOffset At, long Requests, long ServerErrors);

/// <summary>
/// A node's sync stream as the replica serving it last wrote it: connected since when, and
/// whether it was beating (<paramref name="Beating"/>; when not, <paramref name="LastBeat"/> is
/// its last heartbeat). A beating node's replica does not write each beat: its replica's lease
/// vouches for it while it is renewed.
/// </summary>
public sealed record NodePresence(string Node, string Replica, long Session, DateTimeOffset Since, bool Connected, bool Beating, DateTimeOffset LastBeat);

/// <summary>Writes made under lease <paramref name="Lease"/> at <paramref name="Epoch"/>: refused once the epoch has moved on.</summary>
public sealed record Fence(string Lease, long Epoch)
{
    public StoreException Refusal(long current) =>
        new(StoreError.Conflict, "Lease", Lease, $"lease \"{Lease}\" has moved to epoch {current}; a write under epoch {Epoch} is refused (this server is no longer its holder)");
}

/// <summary>The precondition of a rollout save (<see cref="IControlPlaneStore.SaveRolloutAsync"/>'s unchangedFrom).</summary>
public static class RolloutPrecondition
{
    /// <summary>Throws Conflict unless the stored state (its JSON, or null when none) is <paramref name="expected"/>.</summary>
    public static void Check(string app, string? storedJson, Rollouts.RolloutState? expected)
    {
        if (expected is null)
        {
            return;
        }

        var stored = storedJson is null ? null : Rollouts.RolloutState.FromJson(System.Text.Json.Nodes.JsonNode.Parse(storedJson)!.AsObject());
        if (stored is null || stored.ToJson().ToJsonString() != expected.ToJson().ToJsonString())
        {
            throw new StoreException(StoreError.Conflict, "Rollout", app,
                $"the rollout of app \"{app}\" changed since it was read (now {(stored is null ? "none" : $"revision {stored.Revision} step {stored.Step + 1}, {stored.Phase}")}); read it again");
        }
    }
}

/// <summary>The resources a node acked holding at a revision, so a reconnect can send only the difference.</summary>
public sealed record NodeInventory(long Revision, IReadOnlyDictionary<string, long> Resources);

public enum WriteOp
{
    /// <summary>Fails with AlreadyExists when present.</summary>
    Create,

    /// <summary>Fails with NotFound when absent, Conflict when the expected version is stale.</summary>
    Replace,

    /// <summary>Create or replace: what apply does.</summary>
    Upsert,

    /// <summary>Fails with NotFound when absent.</summary>
    Delete,
}

/// <summary>One write in a transaction. Spec and labels replace the stored ones whole.</summary>
public sealed record ResourceWrite
{
    public required WriteOp Op { get; init; }

    public required string Kind { get; init; }

    public required string Name { get; init; }

    public IReadOnlyDictionary<string, string> Labels { get; init; } = new Dictionary<string, string>();

    public IReadOnlyDictionary<string, string> Annotations { get; init; } = new Dictionary<string, string>();

    public string SpecJson { get; init; } = "{}";

    /// <summary>When set, the write fails with Conflict unless the stored version equals it.</summary>
    public long? ExpectedResourceVersion { get; init; }
}

public enum WriteOutcome
{
    Created,
    Configured,
    Unchanged,
    Deleted,
}

public sealed record WriteResult(WriteOutcome Outcome, StoredResource Resource);

public enum ChangeOp
{
    Upserted,
    Deleted,
}

public sealed record ResourceChange(long Revision, string Kind, string Name, ChangeOp Op);

public enum StoreError
{
    NotFound,
    AlreadyExists,
    Conflict,
}

/// <summary>A write the store refused; nothing of its transaction was applied.</summary>
public sealed class StoreException : Exception
{
    public StoreException(StoreError error, string kind, string name, string message)
        : base(message)
    {
        Error = error;
        Kind = kind;
        Name = name;
    }

    public StoreException()
    {
        Kind = "";
        Name = "";
    }

    public StoreException(string message)
        : base(message)
    {
        Kind = "";
        Name = "";
    }

    public StoreException(string message, Exception innerException)
        : base(message, innerException)
    {
        Kind = "";
        Name = "";
    }

    public StoreError Error { get; }

    public string Kind { get; }

    public string Name { get; }
}

/// <summary>A tag in the server's image registry: repository:tag → manifest digest.</summary>
public sealed record ImageTag(string Repository, string Tag, string Digest, DateTimeOffset UpdatedAt);
