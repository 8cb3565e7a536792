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
