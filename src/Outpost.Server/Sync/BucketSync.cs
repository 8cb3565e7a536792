using Microsoft.Extensions.Logging;
using Outpost.Core.Resources;
using Outpost.Core.Store;
using Outpost.Core.Sync;
using Outpost.Protocol;

namespace Outpost.Server.Sync;

/// <summary>A bucket request the control plane refuses, with why; <see cref="Code"/> is the HTTP status the API answers with.</summary>
public sealed class BucketWriteException : Exception
{
    public BucketWriteException(int code, string message)
        : base(message) => Code = code;

    public BucketWriteException()
        : this(400, "bucket request refused")
    {
    }

    public BucketWriteException(string message)
        : this(400, message)
    {
    }

    public BucketWriteException(string message, Exception innerException)
        : base(message, innerException) => Code = 400;

    public int Code { get; }
}

/// <summary>
/// The cloud side of bucket sync: merges edge writes and cloud writes into the server's
/// copy by each bucket's policy, stamped with the cloud's hybrid logical clock, and wakes
/// the sessions that carry the changes down.
/// </summary>
public sealed partial class BucketSync(IControlPlaneStore store, TimeProvider time, ILogger<BucketSync> logger)
{
    /// <summary>Stamps cloud writes; follows every stamp it sees from the edge.</summary>
    public HybridLogicalClock Clock { get; } = new(VersionedValue.Cloud, time);

    /// <summary>A bucket's spec, or a 404 when there is no such Bucket.</summary>
    public async Task<BucketSpec> SpecAsync(string bucket, CancellationToken ct)
    {
        var resource = await store.GetAsync(ResourceKind.Bucket.Kind, bucket, ct)
            ?? throw new BucketWriteException(404, $"buckets \"{bucket}\" not found");
        return BucketSpec.FromJson(resource.Spec());
    }

    /// <summary>
    /// A write from the API: stamped now, based on the value the server holds. Returns the
    /// merge result and the entry as it stands after (the write may lose under the policy).
    /// </summary>
    public async Task<(BucketMergeResult Result, BucketEntry Entry)> WriteFromCloudAsync(string bucket, string key, byte[]? value, CancellationToken ct)
    {
        var spec = await SpecAsync(bucket, ct);
        if (!spec.CloudWritable)
        {
            throw new BucketWriteException(400, $"bucket \"{bucket}\" is {BucketSpec.Format(spec.Direction)}: only its nodes write it (the cloud can write two-way and cloud-to-edge buckets)");
        }

        CheckKeyAndValue(key, value);
        var current = await store.GetBucketEntryAsync(bucket, "", key, ct);
        var write = new BucketWrite(key, new VersionedValue(value, Clock.Now()), current?.Version.Stamp);
        var result = await store.MergeBucketAsync(bucket, "", spec.ConflictPolicy, [write], ct);
        var entry = await store.GetBucketEntryAsync(bucket, "", key, ct) ?? throw new InvalidOperationException("a merged key vanished");
        return (result, entry);
    }

    /// <summary>
    /// Merges a node's batch. Writes must carry the node's own name as origin (anything else
    /// is a forged write and ends the session); writes to buckets that do not sync up from
    /// this node are refused, counted and reported back rather than stalling the node.
    /// </summary>
    public async Task<KvAck> MergeFromNodeAsync(string node, IReadOnlyDictionary<string, string> nodeLabels, KvBatch batch, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(batch);
        var ack = new KvAck { Through = batch.Through };
        foreach (var group in batch.Writes.GroupBy(w => w.Bucket, StringComparer.Ordinal))
        {
            var resource = await store.GetAsync(ResourceKind.Bucket.Kind, group.Key, ct);
            var spec = resource is null ? null : BucketSpec.FromJson(resource.Spec());
            string? refusal = spec is null ? $"bucket \"{group.Key}\" does not exist"
                : !DesiredStateDiff.Targets(resource!.Spec(), nodeLabels) ? $"bucket \"{group.Key}\" is not placed on node \"{node}\""
                : !spec.SyncsUp ? $"bucket \"{group.Key}\" is {BucketSpec.Format(spec.Direction)}: edge writes do not sync up"
                : null;
            var writes = new List<BucketWrite>();
            foreach (var wire in group)
            {
                var write = KvWire.FromWire(wire);
                if (write.Version.Stamp.Origin != node)
                {
                    throw new UnauthorizedAccessException($"node \"{node}\" sent a write to {wire.Bucket}/{wire.Key} stamped by \"{write.Version.Stamp.Origin}\"; a node writes only as itself");
                }

                var invalid = refusal ?? BucketSpec.KeyOrValueProblem(write.Key, write.Version.Value);
                if (invalid is not null)
                {
                    ack.Refused++;
                    ack.RefusedReason = invalid;
                    continue;
                }

                Clock.Observe(write.Version.Stamp);
                writes.Add(write);
            }

            if (writes.Count == 0)
            {
                continue;
            }

            var scope = spec!.Direction == BucketDirection.EdgeToCloud ? node : "";
            var result = await store.MergeBucketAsync(group.Key, scope, spec.ConflictPolicy, writes, ct);
            ack.Stored += result.Stored;
            ack.Kept += result.Kept;
            ack.Conflicts += result.Conflicts;
            if (result.Conflicts > 0)
            {
                LogConflicts(logger, group.Key, node, result.Conflicts);
            }
        }

        if (ack.Refused > 0)
        {
            LogRefused(logger, ack.Refused, node, ack.RefusedReason);
        }

        return ack;
    }

    private static void CheckKeyAndValue(string key, byte[]? value)
    {
        if (BucketSpec.KeyOrValueProblem(key, value) is { } problem)
        {
            throw new BucketWriteException(400, problem);
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Bucket {Bucket}: {Count} conflicting writes from node '{Node}' settled by policy (see the conflict log)")]
    private static partial void LogConflicts(ILogger logger, string bucket, string node, int count);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Refused {Count} bucket writes from node '{Node}': {Reason}")]
    private static partial void LogRefused(ILogger logger, int count, string node, string reason);
}
