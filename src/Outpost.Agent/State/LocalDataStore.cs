using System.Globalization;
using Microsoft.Data.Sqlite;

namespace Outpost.Agent.State;

/// <summary>A record waiting in the outbox, in per-node sequence order.</summary>
public sealed record OutboxRecord(long Sequence, string Topic, string App, byte[] Payload, DateTimeOffset CreatedAt);

/// <summary>
/// Data apps produce on the node: key-value buckets and the outbox of published records,
/// in their own SQLite file (WAL) so app writes never wait on desired-state commits.
/// Every write is durable when the call returns.
/// </summary>
public sealed class LocalDataStore : IDisposable
{
    private readonly string _connectionString;
    private readonly TimeProvider _time;

    public LocalDataStore(string path, TimeProvider? time = null)
    {
        _time = time ?? TimeProvider.System;
        _connectionString = new SqliteConnectionStringBuilder { DataSource = path, Mode = SqliteOpenMode.ReadWriteCreate, Pooling = true, DefaultTimeout = 30 }.ToString();
        using var connection = Open();
        Execute(connection, """
            PRAGMA journal_mode = WAL;
            CREATE TABLE IF NOT EXISTS kv (
              bucket TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL, updated_at TEXT NOT NULL,
              PRIMARY KEY (bucket, key)
            );
            CREATE TABLE IF NOT EXISTS outbox (
              sequence INTEGER PRIMARY KEY AUTOINCREMENT,
              topic TEXT NOT NULL, app TEXT NOT NULL, payload BLOB NOT NULL, created_at TEXT NOT NULL
            );
            """);
    }

    public byte[]? KvGet(string bucket, string key)
    {
        using var connection = Open();
        using var command = Command(connection, "SELECT value FROM kv WHERE bucket = $b AND key = $k", ("$b", bucket), ("$k", key));
        return command.ExecuteScalar() as byte[];
    }

    public void KvSet(string bucket, string key, ReadOnlySpan<byte> value)
    {
        using var connection = Open();
        Execute(connection, "INSERT INTO kv (bucket, key, value, updated_at) VALUES ($b, $k, $v, $t) ON CONFLICT (bucket, key) DO UPDATE SET value = $v, updated_at = $t",
            ("$b", bucket), ("$k", key), ("$v", value.ToArray()), ("$t", Now()));
    }

    public bool KvDelete(string bucket, string key)
    {
        using var connection = Open();
        return Execute(connection, "DELETE FROM kv WHERE bucket = $b AND key = $k", ("$b", bucket), ("$k", key)) > 0;
    }

    /// <summary>Appends a record and returns its sequence number.</summary>
    public long Append(string topic, string app, ReadOnlySpan<byte> payload)
    {
        using var connection = Open();
        using var command = Command(connection, "INSERT INTO outbox (topic, app, payload, created_at) VALUES ($t, $a, $p, $c) RETURNING sequence",
            ("$t", topic), ("$a", app), ("$p", payload.ToArray()), ("$c", Now()));
        return (long)command.ExecuteScalar()!;
    }

    /// <summary>Records after a sequence, oldest first.</summary>
    public IReadOnlyList<OutboxRecord> ReadOutbox(long afterSequence, int limit)
    {
        using var connection = Open();
        using var command = Command(connection, "SELECT sequence, topic, app, payload, created_at FROM outbox WHERE sequence > $after ORDER BY sequence LIMIT $limit",
            ("$after", afterSequence), ("$limit", limit));
        using var reader = command.ExecuteReader();
        var records = new List<OutboxRecord>();
        while (reader.Read())
        {
            records.Add(new OutboxRecord(reader.GetInt64(0), reader.GetString(1), reader.GetString(2), (byte[])reader[3],
                DateTimeOffset.Parse(reader.GetString(4), CultureInfo.InvariantCulture)));
        }

        return records;
    }

    public void Dispose() => SqliteConnection.ClearAllPools();

    private string Now() => _time.GetUtcNow().ToString("O", CultureInfo.InvariantCulture);

    private SqliteConnection Open()
    {
        var connection = new SqliteConnection(_connectionString);
        connection.Open();
        return connection;
    }

    private static SqliteCommand Command(SqliteConnection connection, string sql, params (string Name, object Value)[] parameters)
    {
        var command = connection.CreateCommand();
        command.CommandText = sql;
        foreach (var (name, value) in parameters)
        {
            command.Parameters.AddWithValue(name, value);
        }

        return command;
    }

    private static int Execute(SqliteConnection connection, string sql, params (string Name, object Value)[] parameters)
    {
        using var command = Command(connection, sql, parameters);
        return command.ExecuteNonQuery();
    }
}
