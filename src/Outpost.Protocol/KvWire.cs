using Google.Protobuf;
using Outpost.Core.Sync;

namespace Outpost.Protocol;

/// <summary>Bucket writes between their wire form and the merge's types.</summary>
public static class KvWire
{
    public static KvWrite ToWire(string bucket, string key, VersionedValue version, HlcTimestamp? @base)
    {
        ArgumentNullException.ThrowIfNull(version);
        var write = new KvWrite
        {
            Bucket = bucket,
            Key = key,
            Deleted = version.Value is null,
            Value = version.Value is null ? ByteString.Empty : UnsafeByteOperations.UnsafeWrap(version.Value),
            Stamp = ToWire(version.Stamp),
        };
        if (@base is { } b)
        {
            write.Base = ToWire(b);
        }

        return write;
    }

    /// <summary>Reads a write; a missing or malformed stamp is an <see cref="InvalidDataException"/> naming the key.</summary>
    public static BucketWrite FromWire(KvWrite write)
    {
        ArgumentNullException.ThrowIfNull(write);
        if (write.Stamp is null || string.IsNullOrEmpty(write.Stamp.Origin) || write.Stamp.WallMs < 0 || write.Stamp.Counter < 0)
        {
            throw new InvalidDataException($"bucket write {write.Bucket}/{write.Key} has no valid stamp");
        }

        var version = new VersionedValue(write.Deleted ? null : write.Value.ToByteArray(), FromWire(write.Stamp));
        return new BucketWrite(write.Key, version, write.Base is null ? null : FromWire(write.Base));
    }

    private static Stamp ToWire(HlcTimestamp stamp) => new() { WallMs = stamp.WallMs, Counter = stamp.Counter, Origin = stamp.Origin };

    private static HlcTimestamp FromWire(Stamp stamp) => new(stamp.WallMs, stamp.Counter, stamp.Origin);
}
