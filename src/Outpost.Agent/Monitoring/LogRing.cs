using System.Text;
using System.Threading.Channels;
using Microsoft.Data.Sqlite;
using Outpost.Agent.State;

namespace Outpost.Agent.Monitoring;

/// <summary>One structured log line kept on the node until the server acks it.</summary>
public sealed record LogEntry(long Sequence, DateTimeOffset At, string Level, string App, long Revision, string Message);

/// <summary>The ring's state: what waits to be shipped and what the quota threw away.</summary>
public sealed record LogStats(long PendingEntries, long PendingBytes, long DroppedTotal, long QuotaBytes);

/// <summary>
/// The node's logs (app stderr, the log host function, the agent's own lines) in a bounded
/// ring: a SQLite file of its own, so logging never waits on app data. Lines are queued in
/// memory and written in batches by one writer; past the quota the oldest are dropped and
/// counted. Shipped to the server after the outbox's data, and deleted once acked.
/// </summary>
public sealed class LogRing : IDisposable
{
    /// <summary>Longer lines are cut to this many bytes (and say so).</summary>
    public const int MaxMessageBytes = 8 * 1024;

    /// <summary>Default quota: 16 MiB of log lines.</summary>
    public const long DefaultQuotaBytes = 16L * 1024 * 1024;

    /// <summary>Lines waiting for the writer; beyond this the newest are dropped (and counted).</summary>
    private const int QueueCapacity = 10_000;

    /// <summary>How long the writer lets lines gather before a commit.</summary>
    private static readonly TimeSpan BatchDelay = TimeSpan.FromMilliseconds(50);

    /// <summary>Bookkeeping per line besides its text, counted against the quota.</summary>
    private const int EntryOverhead = 32;

    private readonly string _connectionString;
    private readonly TimeProvider _time;
    private readonly long _quotaBytes;
    private readonly Channel<(DateTimeOffset At, string Level, string App, long Revision, string Message)> _queue;
    private readonly Task _writer;
    private readonly Lock _lock = new();
    private long _pendingEntries;
    private long _pendingBytes;
    private long _dropped;
    private long _queued;
    private long _written;

    /// <summary>Raised after lines were written (the shipper wakes on it).</summary>
    public event Action? Appended;

    public LogRing(string path, long quotaBytes = DefaultQuotaBytes, TimeProvider? time = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(quotaBytes, 1024);
        _quotaBytes = quotaBytes;
        _time = time ?? TimeProvider.System;
        _connectionString = new SqliteConnectionStringBuilder { DataSource = path, Mode = SqliteOpenMode.ReadWriteCreate, Pooling = true, DefaultTimeout = 30 }.ToString();
        using var connection = Sql.Open(_connectionString);
        Sql.Execute(connection, null, """
            PRAGMA journal_mode = WAL;
            CREATE TABLE IF NOT EXISTS logs (
              sequence INTEGER PRIMARY KEY AUTOINCREMENT,
              at_ms INTEGER NOT NULL, level TEXT NOT NULL, app TEXT NOT NULL, revision INTEGER NOT NULL, message TEXT NOT NULL, size INTEGER NOT NULL
            );
            CREATE TABLE IF NOT EXISTS log_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
            INSERT OR IGNORE INTO log_meta (key, value) VALUES ('stream', lower(hex(randomblob(16)))), ('dropped', '0');
            """);
        using (var meta = Sql.Command(connection, null, "SELECT (SELECT value FROM log_meta WHERE key = 'stream'), (SELECT value FROM log_meta WHERE key = 'dropped'), COUNT(*), COALESCE(SUM(size), 0) FROM logs"))
        using (var reader = meta.ExecuteReader())
        {
            reader.Read();
            Stream = reader.GetString(0);
            _dropped = long.Parse(reader.GetString(1), System.Globalization.CultureInfo.InvariantCulture);
            _pendingEntries = reader.GetInt64(2);
            _pendingBytes = reader.GetInt64(3);
        }

        _queue = Channel.CreateBounded<(DateTimeOffset, string, string, long, string)>(
            new BoundedChannelOptions(QueueCapacity) { SingleReader = true, FullMode = BoundedChannelFullMode.Wait }); // TryWrite fails when full: counted below
        _writer = Task.Run(WriteLoopAsync);
    }

    /// <summary>
    /// Names this node's sequence of lines: the server stores each (stream, sequence) once,
    /// and a node whose data dir was reset starts a new stream rather than colliding.
    /// </summary>
    public string Stream { get; }

    public LogStats Stats
    {
        get
        {
            lock (_lock)
            {
                return new LogStats(_pendingEntries, _pendingBytes, _dropped, _quotaBytes);
            }
        }
    }

    /// <summary>Queues a line; never blocks. Levels: debug, info, warn, error.</summary>
    public void Write(string level, string app, long revision, string message)
    {
        ArgumentNullException.ThrowIfNull(message);
        if (Encoding.UTF8.GetByteCount(message) > MaxMessageBytes)
        {
            message = string.Concat(TruncateUtf8(message, MaxMessageBytes - 32), " [cut at 8 KiB]");
        }

        Interlocked.Increment(ref _queued);
        if (!_queue.Writer.TryWrite((_time.GetUtcNow(), level, app, revision, message)))
        {
            Interlocked.Increment(ref _written);
            lock (_lock)
            {
                _dropped++; // written to the file with the next batch
            }
        }
    }

    /// <summary>Waits until every line queued so far is written (for tests and shutdown).</summary>
    public async Task FlushAsync(CancellationToken cancellationToken)
    {
        var target = Interlocked.Read(ref _queued);
        while (Interlocked.Read(ref _written) < target && !_writer.IsCompleted)
        {
            await Task.Delay(10, cancellationToken);
        }
    }

    /// <summary>Lines after a sequence, oldest first, up to a count and roughly a byte size.</summary>
    public IReadOnlyList<LogEntry> Read(long after, int maxEntries, long maxBytes)
    {
        using var connection = Sql.Open(_connectionString);
        using var command = Sql.Command(connection, null,
            "SELECT sequence, at_ms, level, app, revision, message, size FROM logs WHERE sequence > $after ORDER BY sequence LIMIT $limit",
            ("$after", after), ("$limit", maxEntries));
        using var reader = command.ExecuteReader();
        var entries = new List<LogEntry>();
        var bytes = 0L;
        while (reader.Read() && (entries.Count == 0 || bytes + reader.GetInt64(6) <= maxBytes))
        {
            bytes += reader.GetInt64(6);
            entries.Add(new LogEntry(reader.GetInt64(0), DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(1)), reader.GetString(2), reader.GetString(3),
                reader.GetInt64(4), reader.GetString(5)));
        }

        return entries;
    }

    /// <summary>Forgets lines the server has stored.</summary>
    public void DeleteThrough(long sequence)
    {
        lock (_lock)
        {
            using var connection = Sql.Open(_connectionString);
            using var transaction = connection.BeginTransaction(deferred: false);
            using (var sum = Sql.Command(connection, transaction, "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM logs WHERE sequence <= $s", ("$s", sequence)))
            using (var reader = sum.ExecuteReader())
            {
                reader.Read();
                _pendingEntries -= reader.GetInt64(0);
                _pendingBytes -= reader.GetInt64(1);
            }

            Sql.Execute(connection, transaction, "DELETE FROM logs WHERE sequence <= $s", ("$s", sequence));
            transaction.Commit();
        }
    }

    private async Task WriteLoopAsync()
    {
        var batch = new List<(DateTimeOffset At, string Level, string App, long Revision, string Message)>();
        while (await _queue.Reader.WaitToReadAsync())
        {
            // Let lines gather: one commit per batch, not per line, when an app logs every request.
            await Task.Delay(BatchDelay);
            batch.Clear();
            while (batch.Count < 5000 && _queue.Reader.TryRead(out var line))
            {
                batch.Add(line);
            }

            try
            {
                Append(batch);
            }
            catch (SqliteException)
            {
                lock (_lock)
                {
                    _dropped += batch.Count; // the disk refused them: counted, never retried forever
                }
            }

            Interlocked.Add(ref _written, batch.Count);
            Appended?.Invoke();
        }
    }

    private void Append(List<(DateTimeOffset At, string Level, string App, long Revision, string Message)> batch)
    {
        lock (_lock)
        {
            using var connection = Sql.Open(_connectionString);
            // Lines are not data: a power cut may lose the last commits, never the file (WAL).
            Sql.Execute(connection, null, "PRAGMA synchronous = NORMAL");
            using var transaction = connection.BeginTransaction(deferred: false);
            // One prepared statement for the batch: only the parameter values change per line.
            using (var insert = Sql.Command(connection, transaction, "INSERT INTO logs (at_ms, level, app, revision, message, size) VALUES ($at, $level, $app, $rev, $message, $size)",
                ("$at", 0L), ("$level", ""), ("$app", ""), ("$rev", 0L), ("$message", ""), ("$size", 0L)))
            {
                insert.Prepare();
                var p = insert.Parameters;
                foreach (var (at, level, app, revision, message) in batch)
                {
                    var size = Encoding.UTF8.GetByteCount(message) + app.Length + EntryOverhead;
                    p[0].Value = at.ToUnixTimeMilliseconds();
                    p[1].Value = level;
                    p[2].Value = app;
                    p[3].Value = revision;
                    p[4].Value = message;
                    p[5].Value = size;
                    insert.ExecuteNonQuery();
                    _pendingEntries++;
                    _pendingBytes += size;
                }
            }

            if (_pendingBytes > _quotaBytes)
            {
                // Oldest first, until the ring fits again.
                var freed = 0L;
                var removed = 0L;
                var through = 0L;
                using (var oldest = Sql.Command(connection, transaction, "SELECT sequence, size FROM logs ORDER BY sequence"))
                using (var reader = oldest.ExecuteReader())
                {
                    while (_pendingBytes - freed > _quotaBytes && reader.Read())
                    {
                        through = reader.GetInt64(0);
                        freed += reader.GetInt64(1);
                        removed++;
                    }
                }

                Sql.Execute(connection, transaction, "DELETE FROM logs WHERE sequence <= $s", ("$s", through));
                _pendingBytes -= freed;
                _pendingEntries -= removed;
                _dropped += removed;
            }

            Sql.Execute(connection, transaction, "UPDATE log_meta SET value = $d WHERE key = 'dropped'", ("$d", _dropped.ToString(System.Globalization.CultureInfo.InvariantCulture)));
            transaction.Commit();
        }
    }

    private static string TruncateUtf8(string text, int maxBytes)
    {
        var bytes = Encoding.UTF8.GetBytes(text);
        var cut = Math.Min(maxBytes, bytes.Length);
        while (cut > 0 && cut < bytes.Length && (bytes[cut] & 0xC0) == 0x80)
        {
            cut--; // not inside a character
        }

        return Encoding.UTF8.GetString(bytes, 0, cut);
    }

    public void Dispose()
    {
        _queue.Writer.TryComplete();
        _writer.Wait(TimeSpan.FromSeconds(5));
    }
}
