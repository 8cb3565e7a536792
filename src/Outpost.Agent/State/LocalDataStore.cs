using System.Globalization;
using Microsoft.Data.Sqlite;

namespace Outpost.Agent.State;

/// <summary>What happens when a record would take the outbox over its quota.</summary>
public enum OverflowPolicy
{
    /// <summary>Discard the oldest records until the new one fits (the default: fresh data wins).</summary>
    DropOldest,

    /// <summary>Refuse the new record; publish reports the refusal to the app or device.</summary>
    RejectNew,
}

/// <summary>The outbox's state, as heartbeats report it.</summary>
public sealed record OutboxStats(long PendingRecords, long PendingBytes, long DroppedTotal, OverflowPolicy Policy, long QuotaBytes);

/// <summary>A record waiting in the outbox, in per-node sequence order.</summary>
public sealed record OutboxRecord(long Sequence, string Topic, string App, byte[] Payload, DateTimeOffset CreatedAt);

/// <summary>
/// Data apps produce on the node: key-value buckets and the outbox of published records,
/// in their own SQLite file (WAL) so app writes never wait on desired-state commits.
/// Every write is durable when the call returns.
/// </summary>
public sealed partial class LocalDataStore : IDisposable
{
    private readonly string _connectionString;
    private readonly TimeProvider _time;
    private readonly Lock _outboxLock = new();
    private readonly long _quotaBytes;
    private readonly OverflowPolicy _policy;
    private long _pendingRecords;
    private long _pendingBytes;
    private long _dropped;

    /// <summary>Raised after a record is appended (the shipper wakes on it).</summary>
    public event Action? Appended;

    /// <summary>Default outbox quota: 256 MiB of payload.</summary>
    public const long DefaultQuotaBytes = 256L * 1024 * 1024;

    public LocalDataStore(string path, TimeProvider? time = null, long quotaBytes = DefaultQuotaBytes, OverflowPolicy policy = OverflowPolicy.DropOldest, string origin = "local")
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(quotaBytes, 1);
        _time = time ?? TimeProvider.System;
        _quotaBytes = quotaBytes;
        _policy = policy;
        _connectionString = new SqliteConnectionStringBuilder { DataSource = path, Mode = SqliteOpenMode.ReadWriteCreate, Pooling = true, DefaultTimeout = 30 }.ToString();
        using var connection = Sql.Open(_connectionString);
        Sql.Execute(connection, null, """
            PRAGMA journal_mode = WAL;
            CREATE TABLE IF NOT EXISTS kv (
              bucket TEXT NOT NULL, key TEXT NOT NULL, value BLOB NULL, updated_at TEXT NOT NULL,
              PRIMARY KEY (bucket, key)
            );
            CREATE TABLE IF NOT EXISTS outbox (
              sequence INTEGER PRIMARY KEY AUTOINCREMENT,
              topic TEXT NOT NULL, app TEXT NOT NULL, payload BLOB NOT NULL, created_at TEXT NOT NULL
            );
            CREATE TABLE IF NOT EXISTS outbox_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
            """);
        _clock = InitializeKv(connection, origin);
        using var stats = Sql.Command(connection, null, "SELECT COUNT(*), COALESCE(SUM(length(payload)), 0), (SELECT COALESCE(MAX(value), 0) FROM outbox_meta WHERE key = 'dropped') FROM outbox");
        using var reader = stats.ExecuteReader();
        reader.Read();
        _pendingRecords = reader.GetInt64(0);
        _pendingBytes = reader.GetInt64(1);
        _dropped = reader.GetInt64(2);
    }

    public OutboxStats Stats
    {
        get
        {
            lock (_outboxLock)
            {
                return new OutboxStats(_pendingRecords, _pendingBytes, _dropped, _policy, _quotaBytes);
            }
        }
    }

    /// <summary>
    /// Appends a record durably and returns its sequence number, applying the overflow policy
    /// when the quota would be exceeded: -1 means the record was refused (and counted).
    /// </summary>
    public long Append(string topic, string app, ReadOnlySpan<byte> payload)
    {
        long sequence;
        lock (_outboxLock)
        {
            using var connection = Sql.Open(_connectionString);
            using var transaction = connection.BeginTransaction(deferred: false);
            if (_pendingBytes + payload.Length > _quotaBytes)
            {
                if (_policy == OverflowPolicy.RejectNew || payload.Length > _quotaBytes)
                {
                    AddDropped(connection, transaction, 1);
                    transaction.Commit();
                    return -1;
                }

                // dropOldest: make room from the front of the queue, counting every record.
                var freed = 0L;
                var removed = 0L;
                using (var oldest = Sql.Command(connection, transaction, "SELECT sequence, length(payload) FROM outbox ORDER BY sequence"))
                using (var reader = oldest.ExecuteReader())
                {
                    var through = 0L;
                    while (_pendingBytes - freed + payload.Length > _quotaBytes && reader.Read())
                    {
                        through = reader.GetInt64(0);
                        freed += reader.GetInt64(1);
                        removed++;
                    }

                    reader.Close();
                    Sql.Execute(connection, transaction, "DELETE FROM outbox WHERE sequence <= $s", ("$s", through));
                }

                AddDropped(connection, transaction, removed);
                _pendingBytes -= freed;
                _pendingRecords -= removed;
            }

            using (var insert = Sql.Command(connection, transaction, "INSERT INTO outbox (topic, app, payload, created_at) VALUES ($t, $a, $p, $c) RETURNING sequence",
                ("$t", topic), ("$a", app), ("$p", payload.ToArray()), ("$c", Now())))
            {
                sequence = (long)insert.ExecuteScalar()!;
            }

            transaction.Commit();
            _pendingBytes += payload.Length;
            _pendingRecords++;
        }

        Appended?.Invoke();
        return sequence;
    }

    /// <summary>
    /// Appends many records in one durable commit (a burst from a device, or a replay), in
    /// order; the quota applies as for single appends. Returns how many were accepted.
    /// </summary>
    public int AppendMany(IEnumerable<(string Topic, string App, byte[] Payload)> records)
    {
        ArgumentNullException.ThrowIfNull(records);
        var accepted = 0;
        lock (_outboxLock)
        {
            using var connection = Sql.Open(_connectionString);
            using var transaction = connection.BeginTransaction(deferred: false);
            using var insert = Sql.Command(connection, transaction, "INSERT INTO outbox (topic, app, payload, created_at) VALUES ($t, $a, $p, $c)",
                ("$t", ""), ("$a", ""), ("$p", Array.Empty<byte>()), ("$c", ""));
            var now = Now();
            foreach (var (topic, app, payload) in records)
            {
                if (_pendingBytes + payload.Length > _quotaBytes)
                {
                    // Bursts never evict: the overflow is refused and counted.
                    AddDropped(connection, transaction, 1);
                    continue;
                }

                insert.Parameters["$t"].Value = topic;
                insert.Parameters["$a"].Value = app;
                insert.Parameters["$p"].Value = payload;
                insert.Parameters["$c"].Value = now;
                insert.ExecuteNonQuery();
                _pendingBytes += payload.Length;
                _pendingRecords++;
                accepted++;
            }

            transaction.Commit();
        }

        Appended?.Invoke();
        return accepted;
    }

    private void AddDropped(SqliteConnection connection, SqliteTransaction transaction, long count)
    {
        if (count == 0)
        {
            return;
        }

        _dropped += count;
        Sql.Execute(connection, transaction, "INSERT INTO outbox_meta (key, value) VALUES ('dropped', $v) ON CONFLICT (key) DO UPDATE SET value = $v", ("$v", _dropped));
    }

    /// <summary>The oldest records still waiting (after a sequence), up to a count and (roughly) a byte budget.</summary>
    public IReadOnlyList<OutboxRecord> ReadOutbox(int limit, long maxBytes = long.MaxValue, long afterSequence = 0)
    {
        using var connection = Sql.Open(_connectionString);
        using var command = Sql.Command(connection, null, "SELECT sequence, topic, app, payload, created_at FROM outbox WHERE sequence > $after ORDER BY sequence LIMIT $limit",
            ("$limit", limit), ("$after", afterSequence));
        using var reader = command.ExecuteReader();
        var records = new List<OutboxRecord>();
        var bytes = 0L;
        while (reader.Read() && (records.Count == 0 || bytes < maxBytes))
        {
            var record = new OutboxRecord(reader.GetInt64(0), reader.GetString(1), reader.GetString(2), (byte[])reader[3],
                DateTimeOffset.ParseExact(reader.GetString(4), "O", CultureInfo.InvariantCulture));
            bytes += record.Payload.Length;
            records.Add(record);
        }

        return records;
    }

    /// <summary>Deletes records through a sequence, once the server has acked them as durable.</summary>
    public void DeleteThrough(long sequence)
    {
        lock (_outboxLock)
        {
            using var connection = Sql.Open(_connectionString);
            using var transaction = connection.BeginTransaction(deferred: false);
            using var stats = Sql.Command(connection, transaction, "SELECT COUNT(*), COALESCE(SUM(length(payload)), 0) FROM outbox WHERE sequence <= $s", ("$s", sequence));
            using var reader = stats.ExecuteReader();
            reader.Read();
            var (count, bytes) = (reader.GetInt64(0), reader.GetInt64(1));
            reader.Close();
            Sql.Execute(connection, transaction, "DELETE FROM outbox WHERE sequence <= $s", ("$s", sequence));
            transaction.Commit();
            _pendingRecords -= count;
            _pendingBytes -= bytes;
        }
    }

    public void Dispose() => SqliteConnection.ClearAllPools();

    private string Now() => _time.GetUtcNow().ToString("O", CultureInfo.InvariantCulture);
}
