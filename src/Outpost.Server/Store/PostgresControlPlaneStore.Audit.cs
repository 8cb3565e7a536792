using NpgsqlTypes;
using Outpost.Core.Store;

namespace Outpost.Server.Store;

/// <summary>The audit log (committed in groups) and the event log.</summary>
public sealed partial class PostgresControlPlaneStore
{
    private GroupCommit<AuditEntry>? _audits;

    /// <summary>The most audit entries one transaction takes.</summary>
    private const int AuditBatch = 512;

    /// <summary>Durable when the task completes; entries that arrive together share a commit (<see cref="GroupCommit{T}"/>).</summary>
    public Task AppendAuditAsync(AuditEntry entry, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(entry);
        var audits = LazyInitializer.EnsureInitialized(ref _audits, () => new GroupCommit<AuditEntry>(InsertAuditsAsync, AuditBatch));
        return audits.AddAsync(entry, cancellationToken);
    }

    private async Task InsertAuditsAsync(IReadOnlyList<AuditEntry> batch)
    {
        await using var connection = await _dataSource.OpenConnectionAsync(CancellationToken.None);
        await using var transaction = await connection.BeginTransactionAsync(CancellationToken.None);
        await LockAsync(connection, LockKey.Audit, CancellationToken.None);
        await using var insert = Command(connection, """
            INSERT INTO audit (at_ms, actor, role, verb, path, status, detail)
            SELECT at_ms, actor, role, verb, path, status, detail
            FROM unnest(@at, @actor, @role, @verb, @path, @status, @detail) WITH ORDINALITY AS a (at_ms, actor, role, verb, path, status, detail, n)
            ORDER BY n
            """);
        AddArray(insert, "at", NpgsqlDbType.Bigint, batch.Select(b => b.At.ToUnixTimeMilliseconds()).ToArray());
        AddArray(insert, "actor", NpgsqlDbType.Text, batch.Select(b => b.Actor).ToArray());
        AddArray(insert, "role", NpgsqlDbType.Text, batch.Select(b => b.Role).ToArray());
        AddArray(insert, "verb", NpgsqlDbType.Text, batch.Select(b => b.Verb).ToArray());
        AddArray(insert, "path", NpgsqlDbType.Text, batch.Select(b => b.Path).ToArray());
        AddArray(insert, "status", NpgsqlDbType.Integer, batch.Select(b => b.Status).ToArray());
        AddArray(insert, "detail", NpgsqlDbType.Text, batch.Select(b => b.Detail).ToArray());
        await insert.ExecuteNonQueryAsync(CancellationToken.None);
        await transaction.CommitAsync(CancellationToken.None);
    }

    public async Task<IReadOnlyList<AuditEntry>> ListAuditAsync(long afterId, int limit, CancellationToken cancellationToken)
    {
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken);
        await using var command = Command(connection, "SELECT id, at_ms, actor, role, verb, path, status, detail FROM audit WHERE id > @after ORDER BY id LIMIT @limit",
            ("after", afterId), ("limit", limit));
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        var entries = new List<AuditEntry>();
        while (await reader.ReadAsync(cancellationToken))
        {
            entries.Add(new AuditEntry(reader.GetInt64(0), DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(1)), reader.GetString(2), reader.GetString(3),
                reader.GetString(4), reader.GetString(5), reader.GetInt32(6), reader.IsDBNull(7) ? null : reader.GetString(7)));
        }

        return entries;
    }

    public async Task AppendEventAsync(EventRecord entry, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(entry);
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        await LockAsync(connection, LockKey.Events, cancellationToken);
        await ExecuteAsync(connection, """
            INSERT INTO events (at_ms, kind, name, type, reason, message) VALUES (@at, @kind, @name, @type, @reason, @message)
            """, cancellationToken,
            ("at", entry.At.ToUnixTimeMilliseconds()), ("kind", entry.Kind), ("name", entry.Name), ("type", entry.Type), ("reason", entry.Reason), ("message", entry.Message));
        await transaction.CommitAsync(cancellationToken);
    }

    public async Task<IReadOnlyList<EventRecord>> ListEventsAsync(long afterId, int limit, string? name, CancellationToken cancellationToken)
    {
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken);
        await using var command = Command(connection, $"""
            SELECT id, at_ms, kind, name, type, reason, message FROM events WHERE id > @after {(name is null ? "" : "AND name = @name")} ORDER BY id LIMIT @limit
            """, ("after", afterId), ("name", name), ("limit", limit));
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        var events = new List<EventRecord>();
        while (await reader.ReadAsync(cancellationToken))
        {
            events.Add(new EventRecord(reader.GetInt64(0), DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(1)), reader.GetString(2), reader.GetString(3),
                reader.GetString(4), reader.GetString(5), reader.GetString(6)));
        }

        return events;
    }
}
