namespace Outpost.Core.Sync;

/// <summary>Which way a bucket's writes travel.</summary>
public enum BucketDirection
{
    EdgeLocal,
    EdgeToCloud,
    CloudToEdge,
    TwoWay,
}

/// <summary>How two concurrent writes of one key are settled.</summary>
public enum ConflictPolicy
{
    /// <summary>Last writer wins by hybrid logical clock (the default).</summary>
    Lww,

    /// <summary>A cloud write beats an edge write; otherwise last writer wins.</summary>
    CloudWins,

    /// <summary>An edge write beats a cloud write; otherwise last writer wins.</summary>
    EdgeWins,
}

/// <summary>A key's value as one writer left it; a null value is a deletion (kept as a tombstone).</summary>
public sealed record VersionedValue(byte[]? Value, HlcTimestamp Stamp)
{
    /// <summary>The origin the cloud writes under; every other origin is an edge node.</summary>
    public const string Cloud = "cloud";

    public bool IsCloud => Stamp.Origin == Cloud;
}

/// <summary>
/// A write as it reaches a replica: the value and its stamp, and the stamp of the value it
/// replaced where it was made (null when the key was new there). The base tells an
/// overwrite of a value the writer had seen from a concurrent write that never saw it.
/// </summary>
public sealed record BucketWrite(string Key, VersionedValue Version, HlcTimestamp? Base);

/// <summary>What a replica does with an incoming write.</summary>
/// <param name="Store">The incoming write wins and replaces the current value.</param>
/// <param name="Duplicate">The replica already holds this very write.</param>
/// <param name="Conflict">The two were concurrent and from different writers: the loser belongs in the conflict log.</param>
public sealed record MergeDecision(bool Store, bool Duplicate, (VersionedValue Winner, VersionedValue Loser)? Conflict);

/// <summary>
/// Settles two versions of a key. Deterministic and commutative: every replica that has seen
/// the same writes picks the same winner, whatever order the writes arrived in. The loser is
/// returned for the conflict log (null when the two are the same write).
/// </summary>
public static class BucketMerge
{
    public static (VersionedValue Winner, VersionedValue? Loser) Resolve(VersionedValue a, VersionedValue b, ConflictPolicy policy)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        if (a.Stamp == b.Stamp)
        {
            return (a, null); // the same write seen twice
        }

        var aWins = policy switch
        {
            ConflictPolicy.CloudWins when a.IsCloud != b.IsCloud => a.IsCloud,
            ConflictPolicy.EdgeWins when a.IsCloud != b.IsCloud => !a.IsCloud,
            _ => a.Stamp > b.Stamp,
        };
        return aWins ? (a, b) : (b, a);
    }

    /// <summary>
    /// Decides an incoming write against the replica's current value (null: none). The winner
    /// is <see cref="Resolve"/>'s, so replicas agree whatever the arrival order. It is a conflict
    /// when the two come from different writers and the winner was not written over the loser
    /// (its base is not the loser's stamp): one writer's successive values, or an edit of a
    /// value the editor had already received, are not conflicts.
    /// </summary>
    public static MergeDecision Decide(VersionedValue? current, HlcTimestamp? currentBase, BucketWrite incoming, ConflictPolicy policy)
    {
        ArgumentNullException.ThrowIfNull(incoming);
        if (current is null)
        {
            return new MergeDecision(Store: true, Duplicate: false, Conflict: null);
        }

        if (current.Stamp == incoming.Version.Stamp)
        {
            return new MergeDecision(Store: false, Duplicate: true, Conflict: null);
        }

        var (winner, loser) = Resolve(current, incoming.Version, policy);
        var incomingWins = winner.Stamp == incoming.Version.Stamp;
        var winnerBase = incomingWins ? incoming.Base : currentBase;
        var conflict = loser is not null && winner.Stamp.Origin != loser.Stamp.Origin && winnerBase != loser.Stamp;
        return new MergeDecision(incomingWins, Duplicate: false, conflict ? (winner, loser!) : null);
    }

    /// <summary>Folds any number of versions of a key into the winner and every loser, in a stable order.</summary>
    public static (VersionedValue Winner, IReadOnlyList<VersionedValue> Losers) ResolveAll(IEnumerable<VersionedValue> versions, ConflictPolicy policy)
    {
        ArgumentNullException.ThrowIfNull(versions);
        var distinct = versions.DistinctBy(v => v.Stamp).OrderBy(v => v.Stamp).ToList();
        if (distinct.Count == 0)
        {
            throw new ArgumentException("no versions to resolve", nameof(versions));
        }

        var winner = distinct.Aggregate((x, y) => Resolve(x, y, policy).Winner);
        return (winner, [.. distinct.Where(v => v.Stamp != winner.Stamp)]);
    }
}
