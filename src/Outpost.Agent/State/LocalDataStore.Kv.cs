using Microsoft.Data.Sqlite;
using Outpost.Core.Sync;

namespace Outpost.Agent.State;

/// <summary>A bucket write waiting to be shipped: the latest value of its key, with the base it replaced.</summary>
public sealed record PendingKvWrite(long Sequence, string Bucket, string Key, VersionedValue Version, HlcTimestamp? Base);

/// <summary>
/// Key-value buckets on the node. Every write is stamped with the node's hybrid logical
/// clock. Writes to buckets that sync up also land in a pending set (one row per key, so
/// a key written many times offline ships once) until the server acks them; writes from the
/// cloud merge in by the bucket's conflict policy, and each bucket keeps the revision it
/// holds so a reconnect resumes from there.
/// </summary>
public sealed partial class LocalDataStore
{
    private readonly HybridLogicalClock _clock;
    private readonly Lock _kvLock = new();
    private long _kvSequence;

    /// <summary>The stamp of a value written before this node stamped its writes: older than any real write.</summary>
    private static readonly HlcTimestamp Unstamped = new(0, 0, "unstamped");

    /// <summary>Raised after a write that has to ship (the shipper wakes on it).</summary>
    public event Action? KvPending;

    /// <summary>The clock this node stamps its writes with.</summary>
    public HybridLogicalClock Clock => _clock;

    private HybridLogicalClock InitializeKv(SqliteConnection connection, string origin)
    {
        var columns = new HashSet<string>(StringComparer.Ordinal);
        using (var info = Sql.Command(connection, null, "PRAGMA table_info(kv)"))
        using (var reader = info.ExecuteReader())
        {
            while (reader.Read())
            {
                columns.Add(reader.GetString(1));
            }
        }

        // Data dirs from before buckets synced have neither stamps nor tombstones: add them.
        foreach (var (column, type) in new[] { ("deleted", "INTEGER NOT NULL DEFAULT 0"), ("stamp", "TEXT NULL"), ("base", "TEXT NULL") })
        {
            if (!columns.Contains(column))
            {
                Sql.Execute(connection, null, $"ALTER TABLE kv ADD COLUMN {column} {type}");
            }
        }

        Sql.Execute(connection, null, """
            CREATE TABLE IF NOT EXISTS kv_pending (
              bucket TEXT NOT NULL, key TEXT NOT NULL, value BLOB NULL, deleted INTEGER NOT NULL,
              stamp TEXT NOT NULL, base TEXT NULL, sequence INTEGER NOT NULL,
              PRIMARY KEY (bucket, key)
            );
            CREATE INDEX IF NOT EXISTS kv_pending_by_sequence ON kv_pending (sequence);
            CREATE TABLE IF NOT EXISTS kv_cursors (bucket TEXT PRIMARY KEY, revision INTEGER NOT NULL);
            CREATE TABLE IF NOT EXISTS kv_shipping (bucket TEXT PRIMARY KEY);
            """);

        // Never stamp below a write already made here, even if the wall clock went back across a restart.
        var clock = new HybridLogicalClock(origin, _time);
        using (var stamps = Sql.Command(connection, null, "SELECT stamp FROM kv WHERE stamp IS NOT NULL UNION ALL SELECT stamp FROM kv_pending"))
        using (var reader = stamps.ExecuteReader())
        {
            var latest = (HlcTimestamp?)null;
            while (reader.Read())
            {
                var stamp = HlcTimestamp.Parse(reader.GetString(0));
                latest = latest is null || stamp > latest ? stamp : latest;
            }

            if (latest is { } seen)
            {
                clock.Observe(seen);
            }
        }

        using var sequence = Sql.Command(connection, null, "SELECT COALESCE((SELECT value FROM outbox_meta WHERE key = 'kv_sequence'), 0)");
        _kvSequence = (long)sequence.ExecuteScalar()!;
        return clock;
    }

    /// <summary>A key's value, or null when absent or deleted.</summary>
    public byte[]? KvGet(string bucket, string key)
    {
        using var connection = Sql.Open(_connectionString);
        using var command = Sql.Command(connection, null, "SELECT value FROM kv WHERE bucket = $b AND key = $k AND deleted = 0", ("$b", bucket), ("$k", key));
        return command.ExecuteScalar() switch
        {
            byte[] bytes => bytes,
            DBNull or null => null,
            var other => throw new InvalidDataException($"kv {bucket}/{key} holds {other.GetType().Name}, not bytes"),
        };
    }

    /// <summary>A key's value with its stamp (deletions included), or null when never written.</summary>
    public (VersionedValue Version, HlcTimestamp? Base)? KvGetVersioned(string bucket, string key)
    {
        using var connection = Sql.Open(_connectionString);
        return Current(connection, null, bucket, key);
    }

    /// <summary>Every live key of a bucket with its value, in key order.</summary>
    public IReadOnlyList<(string Key, byte[] Value)> KvList(string bucket)
    {
        using var connection = Sql.Open(_connectionString);
        using var command = Sql.Command(connection, null, "SELECT key, value FROM kv WHERE bucket = $b AND deleted = 0 ORDER BY key", ("$b", bucket));
        using var reader = command.ExecuteReader();
        var entries = new List<(string, byte[])>();
        while (reader.Read())
        {
            entries.Add((reader.GetString(0), reader.IsDBNull(1) ? [] : (byte[])reader[1]));
        }

        return entries;
    }

    /// <summary>Writes a key durably; with <paramref name="shipUp"/> the write also waits in the pending set for the server.</summary>
    public void KvSet(string bucket, string key, ReadOnlySpan<byte> value, bool shipUp = false) => Write(bucket, key, value.ToArray(), shipUp);

    /// <summary>
    /// Deletes a key; true when it held a value. A bucket that syncs keeps a tombstone, so
    /// the deletion travels and merges like any write.
    /// </summary>
    public bool KvDelete(string bucket, string key, bool shipUp = false) => Write(bucket, key, null, shipUp);

    private bool Write(string bucket, string key, byte[]? value, bool shipUp)
    {
        lock (_kvLock)
        {
            using var connection = Sql.Open(_connectionString);
            using var transaction = connection.BeginTransaction(deferred: false);
            var current = Current(connection, transaction, bucket, key);
            var existed = current is { Version.Value: not null };
            if (value is null && !shipUp)
            {
                Sql.Execute(connection, transaction, "DELETE FROM kv WHERE bucket = $b AND key = $k", ("$b", bucket), ("$k", key));
                transaction.Commit();
                return existed;
            }

            var stamp = _clock.Now();
            Upsert(connection, transaction, bucket, key, new VersionedValue(value, stamp), current?.Version.Stamp);
            if (shipUp)
            {
                // A key written again before it shipped keeps the base of its first unshipped write:
                // the server compares it with what it holds to tell an overwrite from a conflict.
                _kvSequence++;
                Sql.Execute(connection, transaction, """
                    INSERT INTO kv_pending (bucket, key, value, deleted, stamp, base, sequence) VALUES ($b, $k, $v, $d, $s, $base, $seq)
                    ON CONFLICT (bucket, key) DO UPDATE SET value = $v, deleted = $d, stamp = $s, sequence = $seq
                    """, ("$b", bucket), ("$k", key), ("$v", value), ("$d", value is null ? 1 : 0), ("$s", stamp.ToString()),
                    ("$base", current?.Version.Stamp.ToString()), ("$seq", _kvSequence));
                Sql.Execute(connection, transaction, "INSERT INTO outbox_meta (key, value) VALUES ('kv_sequence', $v) ON CONFLICT (key) DO UPDATE SET value = $v", ("$v", _kvSequence));
            }

            transaction.Commit();
            if (shipUp)
            {
                KvPending?.Invoke();
            }

            return existed;
        }
    }

    /// <summary>The oldest pending writes, in the order they were (last) made.</summary>
    public IReadOnlyList<PendingKvWrite> ReadKvPending(int limit)
    {
        using var connection = Sql.Open(_connectionString);
        using var command = Sql.Command(connection, null, "SELECT sequence, bucket, key, value, deleted, stamp, base FROM kv_pending ORDER BY sequence LIMIT $limit", ("$limit", limit));
        using var reader = command.ExecuteReader();
        var pending = new List<PendingKvWrite>();
        while (reader.Read())
        {
            var version = new VersionedValue(reader.GetInt64(4) != 0 ? null : reader.IsDBNull(3) ? [] : (byte[])reader[3], HlcTimestamp.Parse(reader.GetString(5)));
            pending.Add(new PendingKvWrite(reader.GetInt64(0), reader.GetString(1), reader.GetString(2), version, reader.IsDBNull(6) ? null : HlcTimestamp.Parse(reader.GetString(6))));
        }

        return pending;
    }

    /// <summary>How many writes wait for the server.</summary>
    public long KvPendingCount
    {
        get
        {
            using var connection = Sql.Open(_connectionString);
            using var command = Sql.Command(connection, null, "SELECT COUNT(*) FROM kv_pending");
            return (long)command.ExecuteScalar()!;
        }
    }

    /// <summary>Forgets pending writes through a sequence once the server merged them (a key written again since keeps its row).</summary>
    public void AckKvThrough(long sequence)
    {
        using var connection = Sql.Open(_connectionString);
        Sql.Execute(connection, null, "DELETE FROM kv_pending WHERE sequence <= $s", ("$s", sequence));
    }

    /// <summary>Per bucket, the bucket revision this node holds.</summary>
    public IReadOnlyDictionary<string, long> KvCursors()
    {
        using var connection = Sql.Open(_connectionString);
        using var command = Sql.Command(connection, null, "SELECT bucket, revision FROM kv_cursors");
        using var reader = command.ExecuteReader();
        var cursors = new Dictionary<string, long>(StringComparer.Ordinal);
        while (reader.Read())
        {
            cursors[reader.GetString(0)] = reader.GetInt64(1);
        }

        return cursors;
    }

    /// <summary>
    /// Merges the cloud's values of a bucket by its policy and moves the bucket's cursor, in
    /// one durable transaction. Pending local writes stay pending even when they lose here:
    /// the server must see them to log the conflict. Returns how many values changed.
    /// </summary>
    public int ApplyRemote(string bucket, ConflictPolicy policy, IReadOnlyList<BucketWrite> writes, long revision)
    {
        ArgumentNullException.ThrowIfNull(writes);
        var changed = 0;
        lock (_kvLock)
        {
            using var connection = Sql.Open(_connectionString);
            using var transaction = connection.BeginTransaction(deferred: false);
            foreach (var write in writes)
            {
                _clock.Observe(write.Version.Stamp);
                var current = Current(connection, transaction, bucket, write.Key);
                if (BucketMerge.Decide(current?.Version, current?.Base, write, policy).Store)
                {
                    Upsert(connection, transaction, bucket, write.Key, write.Version, write.Base);
                    changed++;
                }
            }

            Sql.Execute(connection, transaction, "INSERT INTO kv_cursors (bucket, revision) VALUES ($b, $r) ON CONFLICT (bucket) DO UPDATE SET revision = MAX(revision, $r)",
                ("$b", bucket), ("$r", revision));
            transaction.Commit();
        }

        return changed;
    }

    /// <summary>
    /// Marks a bucket as syncing up. The first time (a bucket declared after apps wrote to
    /// it, or changed from edge-local), every key it already holds is queued to ship, so
    /// nothing written before the node learned of the bucket stays behind. Returns how many.
    /// </summary>
    public int StartShipping(string bucket)
    {
        lock (_kvLock)
        {
            using var connection = Sql.Open(_connectionString);
            using var transaction = connection.BeginTransaction(deferred: false);
            if (Sql.Execute(connection, transaction, "INSERT INTO kv_shipping (bucket) VALUES ($b) ON CONFLICT DO NOTHING", ("$b", bucket)) == 0)
            {
                return 0;
            }

            // This node's own values (values from the cloud or other nodes are theirs to sync).
            var keys = new List<string>();
            using (var command = Sql.Command(connection, transaction, "SELECT key, stamp FROM kv WHERE bucket = $b ORDER BY key", ("$b", bucket)))
            using (var reader = command.ExecuteReader())
            {
                while (reader.Read())
                {
                    if (reader.IsDBNull(1) || HlcTimestamp.Parse(reader.GetString(1)).Origin == _clock.Origin)
                    {
                        keys.Add(reader.GetString(0));
                    }
                }
            }

            foreach (var key in keys)
            {
                var current = Current(connection, transaction, bucket, key)!.Value;
                var version = current.Version;
                if (version.Stamp == Unstamped)
                {
                    version = version with { Stamp = _clock.Now() };
                    Upsert(connection, transaction, bucket, key, version, null);
                }

                _kvSequence++;
                Sql.Execute(connection, transaction, """
                    INSERT INTO kv_pending (bucket, key, value, deleted, stamp, base, sequence) VALUES ($b, $k, $v, $d, $s, NULL, $seq)
                    ON CONFLICT (bucket, key) DO NOTHING
                    """, ("$b", bucket), ("$k", key), ("$v", version.Value), ("$d", version.Value is null ? 1 : 0), ("$s", version.Stamp.ToString()), ("$seq", _kvSequence));
            }

            Sql.Execute(connection, transaction, "INSERT INTO outbox_meta (key, value) VALUES ('kv_sequence', $v) ON CONFLICT (key) DO UPDATE SET value = $v", ("$v", _kvSequence));
            transaction.Commit();
            if (keys.Count > 0)
            {
                KvPending?.Invoke();
            }

            return keys.Count;
        }
    }

    /// <summary>Marks a bucket as no longer syncing up (its later writes stay local).</summary>
    public void StopShipping(string bucket)
    {
        using var connection = Sql.Open(_connectionString);
        Sql.Execute(connection, null, "DELETE FROM kv_shipping WHERE bucket = $b", ("$b", bucket));
    }

    /// <summary>The buckets marked as syncing up.</summary>
    public IReadOnlySet<string> ShippingBuckets()
    {
        using var connection = Sql.Open(_connectionString);
        using var command = Sql.Command(connection, null, "SELECT bucket FROM kv_shipping");
        using var reader = command.ExecuteReader();
        var buckets = new HashSet<string>(StringComparer.Ordinal);
        while (reader.Read())
        {
            buckets.Add(reader.GetString(0));
        }

        return buckets;
    }

    /// <summary>Drops a bucket's cursor (the bucket no longer reaches this node), so a later return starts from zero.</summary>
    public void ForgetKvCursor(string bucket)
    {
        using var connection = Sql.Open(_connectionString);
        Sql.Execute(connection, null, "DELETE FROM kv_cursors WHERE bucket = $b", ("$b", bucket));
    }

    private static (VersionedValue Version, HlcTimestamp? Base)? Current(SqliteConnection connection, SqliteTransaction? transaction, string bucket, string key)
    {
        using var command = Sql.Command(connection, transaction, "SELECT value, deleted, stamp, base FROM kv WHERE bucket = $b AND key = $k", ("$b", bucket), ("$k", key));
        using var reader = command.ExecuteReader();
        if (!reader.Read())
        {
            return null;
        }

        // Rows written before stamps existed count as the oldest possible write.
        var stamp = reader.IsDBNull(2) ? Unstamped : HlcTimestamp.Parse(reader.GetString(2));
        var value = reader.GetInt64(1) != 0 ? null : reader.IsDBNull(0) ? [] : (byte[])reader[0];
        return (new VersionedValue(value, stamp), reader.IsDBNull(3) ? null : HlcTimestamp.Parse(reader.GetString(3)));
    }

    private void Upsert(SqliteConnection connection, SqliteTransaction transaction, string bucket, string key, VersionedValue version, HlcTimestamp? @base) =>
        Sql.Execute(connection, transaction, """
            INSERT INTO kv (bucket, key, value, deleted, stamp, base, updated_at) VALUES ($b, $k, $v, $d, $s, $base, $t)
            ON CONFLICT (bucket, key) DO UPDATE SET value = $v, deleted = $d, stamp = $s, base = $base, updated_at = $t
            """, ("$b", bucket), ("$k", key), ("$v", version.Value), ("$d", version.Value is null ? 1 : 0), ("$s", version.Stamp.ToString()),
            ("$base", @base?.ToString()), ("$t", Now()));
}
