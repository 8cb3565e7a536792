using Outpost.Core.Sync;

namespace Outpost.Core.Store;

/// <summary>
/// A key's current value in a bucket on the server. Scope is empty for a bucket's shared
/// keyspace (two-way and cloud-to-edge buckets) and the node's name for an edge-to-cloud
/// bucket, where each node has a keyspace of its own. A null value is a deletion.
/// </summary>
public sealed record BucketEntry(string Bucket, string Scope, string Key, VersionedValue Version, HlcTimestamp? Base, long Revision, DateTimeOffset UpdatedAt);

/// <summary>A write that lost a conflict, with the write that beat it.</summary>
public sealed record BucketConflict(long Id, string Bucket, string Scope, string Key, VersionedValue Winner, VersionedValue Loser, DateTimeOffset At);

/// <summary>What a merge did: writes stored, writes that lost or were already held, and conflicts logged.</summary>
public sealed record BucketMergeResult(int Stored, int Kept, int Duplicates, int Conflicts, long Revision);
