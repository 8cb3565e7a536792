using Npgsql;
using Outpost.Core.Store;
using Outpost.Core.Sync;

namespace Outpost.Server.Store;

/// <summary>Bucket data: current entries per keyspace with a bucket revision, and the conflict log.</summary>
public sealed partial class PostgresControlPlaneStore
{
    private const string EntryColumns = "bucket, scope, key, value, deleted, stamp, base, revision, updated_ms";

    /// <summary>
    /// Under the bucket lock: each merge decides on what the merge before it stored (another
    /// replica's included), and bucket revisions become visible in order.
    /// </summary>
    public async Task<BucketMergeResult> MergeBucketAsync(string bucket, string scope, ConflictPolicy policy, IReadOnlyList<BucketWrite> writes, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(writes);
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        await LockAsync(connection, LockKey.Buckets, cancellationToken);
        var revision = await MetaAsync(connection, "bucket_revision", cancellationToken);
        var now = _time.GetUtcNow().ToUnixTimeMilliseconds();
        var (stored, kept, duplicates, conflicts) = (0, 0, 0, 0);
        foreach (var write in writes)
        {
            var current = await GetEntryAsync(connection, bucket, scope, write.Key, cancellationToken);
            var decision = BucketMerge.Decide(current?.Version, current?.Base, write, policy);
            if (decision.Duplicate)
            {
                duplicates++;
                continue;
            }

            if (decision.Conflict is var (winner, loser))
            {
                await ExecuteAsync(connection, """
                    INSERT INTO bucket_conflicts (bucket, scope, key, winner_value, winner_deleted, winner_stamp, loser_value, loser_deleted, loser_stamp, at_ms)
                    VALUES (@bucket, @scope, @key, @wv, @wd, @ws, @lv, @ld, @ls, @at)
                    """, cancellationToken,
                    ("bucket", bucket), ("scope", scope), ("key", write.Key),
                    ("wv", winner.Value), ("wd", winner.Value is null), ("ws", winner.Stamp.ToString()),
                    ("lv", loser.Value), ("ld", loser.Value is null), ("ls", loser.Stamp.ToString()), ("at", now));
                conflicts++;
            }

            if (!decision.Store)
            {
                kept++;
                continue;
            }

            revision++;
            await ExecuteAsync(connection, $"""
                INSERT INTO bucket_entries ({EntryColumns}) VALUES (@bucket, @scope, @key, @value, @deleted, @stamp, @base, @rev, @at)
                ON CONFLICT (bucket, scope, key) DO UPDATE SET value = excluded.value, deleted = excluded.deleted, stamp = excluded.stamp,
                  base = excluded.base, revision = excluded.revision, updated_ms = excluded.updated_ms
                """, cancellationToken,
                ("bucket", bucket), ("scope", scope), ("key", write.Key), ("value", write.Version.Value),
                ("deleted", write.Version.Value is null), ("stamp", write.Version.Stamp.ToString()),
                ("base", write.Base?.ToString()), ("rev", revision), ("at", now));
            stored++;
        }

        await ExecuteAsync(connection, "INSERT INTO store_meta (key, value) VALUES ('bucket_revision', @v) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            cancellationToken, ("v", revision));
        await NotifyAsync(connection, BucketsChannel, stored > 0 ? revision : 0, cancellationToken);
        await transaction.CommitAsync(cancellationToken);
        BucketChanges.Publish(revision);
        return new BucketMergeResult(stored, kept, duplicates, conflicts, revision);
    }

    public async Task<BucketEntry?> GetBucketEntryAsync(string bucket, string scope, string key, CancellationToken cancellationToken)
    {
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken);
        return await GetEntryAsync(connection, bucket, scope, key, cancellationToken);
    }

    public async Task<IReadOnlyList<BucketEntry>> ListBucketEntriesAsync(string bucket, string? scope, string afterKey, int limit, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(afterKey);
        // Across scopes the cursor is "scope\nkey" (names hold no newline).
        var split = afterKey.IndexOf('\n', StringComparison.Ordinal);
        var (afterScope, afterName) = scope is not null ? (scope, afterKey) : split < 0 ? ("", afterKey) : (afterKey[..split], afterKey[(split + 1)..]);
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken);
        await using var command = Command(connection, $"""
            SELECT {EntryColumns} FROM bucket_entries
            WHERE bucket = @bucket AND NOT deleted AND {(scope is null ? "(scope, key) > (@scope, @after)" : "scope = @scope AND key > @after")}
            ORDER BY scope, key LIMIT @limit
            """, ("bucket", bucket), ("scope", afterScope), ("after", afterName), ("limit", limit));
        return await ReadEntriesAsync(command, cancellationToken);
    }

    public async Task<IReadOnlyList<BucketEntry>> ListBucketChangesAsync(string bucket, string scope, long afterRevision, int limit, CancellationToken cancellationToken)
    {
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken);
        await using var command = Command(connection, $"""
            SELECT {EntryColumns} FROM bucket_entries WHERE bucket = @bucket AND scope = @scope AND revision > @after ORDER BY revision LIMIT @limit
            """, ("bucket", bucket), ("scope", scope), ("after", afterRevision), ("limit", limit));
        return await ReadEntriesAsync(command, cancellationToken);
    }

    public async Task<IReadOnlyList<BucketConflict>> ListBucketConflictsAsync(string bucket, long afterId, int limit, CancellationToken cancellationToken)
    {
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken);
        await using var command = Command(connection, """
            SELECT id, bucket, scope, key, winner_value, winner_deleted, winner_stamp, loser_value, loser_deleted, loser_stamp, at_ms
            FROM bucket_conflicts WHERE bucket = @bucket AND id > @after ORDER BY id LIMIT @limit
            """, ("bucket", bucket), ("after", afterId), ("limit", limit));
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        var conflicts = new List<BucketConflict>();
        while (await reader.ReadAsync(cancellationToken))
        {
            conflicts.Add(new BucketConflict(reader.GetInt64(0), reader.GetString(1), reader.GetString(2), reader.GetString(3),
                Version(reader, 4, 5, 6), Version(reader, 7, 8, 9), DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(10))));
        }

        return conflicts;
    }

    public async Task<long> GetBucketRevisionAsync(CancellationToken cancellationToken)
    {
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken);
        return await MetaAsync(connection, "bucket_revision", cancellationToken);
    }

    private static async Task<long> MetaAsync(NpgsqlConnection connection, string key, CancellationToken cancellationToken)
    {
        await using var command = Command(connection, "SELECT COALESCE(MAX(value), 0) FROM store_meta WHERE key = @key", ("key", key));
        return (long)(await command.ExecuteScalarAsync(cancellationToken))!;
    }

    private static async Task<BucketEntry?> GetEntryAsync(NpgsqlConnection connection, string bucket, string scope, string key, CancellationToken cancellationToken)
    {
        await using var command = Command(connection, $"SELECT {EntryColumns} FROM bucket_entries WHERE bucket = @bucket AND scope = @scope AND key = @key",
            ("bucket", bucket), ("scope", scope), ("key", key));
        var entries = await ReadEntriesAsync(command, cancellationToken);
        return entries.Count == 0 ? null : entries[0];
    }

    private static async Task<IReadOnlyList<BucketEntry>> ReadEntriesAsync(NpgsqlCommand command, CancellationToken cancellationToken)
    {
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        var entries = new List<BucketEntry>();
        while (await reader.ReadAsync(cancellationToken))
        {
            entries.Add(new BucketEntry(reader.GetString(0), reader.GetString(1), reader.GetString(2), Version(reader, 3, 4, 5),
                reader.IsDBNull(6) ? null : HlcTimestamp.Parse(reader.GetString(6)), reader.GetInt64(7), DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(8))));
        }

        return entries;
    }

    private static VersionedValue Version(NpgsqlDataReader reader, int value, int deleted, int stamp) =>
        new(reader.GetBoolean(deleted) ? null : reader.IsDBNull(value) ? [] : reader.GetFieldValue<byte[]>(value), HlcTimestamp.Parse(reader.GetString(stamp)));
}
