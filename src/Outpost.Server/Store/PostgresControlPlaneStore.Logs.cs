using System.Text;
using NpgsqlTypes;
using Outpost.Core.Store;

namespace Outpost.Server.Store;

/// <summary>Log lines the nodes shipped.</summary>
public sealed partial class PostgresControlPlaneStore
{
    private const string LogColumns = "id, node, stream, sequence, at_ms, level, app, revision, message";

    public async Task<IngestResult> IngestLogsAsync(IReadOnlyCollection<LogRecord> lines, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(lines);
        if (lines.Count == 0)
        {
            return new IngestResult(0, 0);
        }

        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        await LockAsync(connection, LockKey.Logs, cancellationToken);
        await using var insert = Command(connection, """
            INSERT INTO logs (node, stream, sequence, at_ms, level, app, revision, message)
            SELECT node, stream, sequence, at_ms, level, app, revision, message
            FROM unnest(@node, @stream, @sequence, @at, @level, @app, @revision, @message) WITH ORDINALITY
              AS l (node, stream, sequence, at_ms, level, app, revision, message, n)
            ORDER BY n
            ON CONFLICT (node, stream, sequence) DO NOTHING
            """);
        AddArray(insert, "node", NpgsqlDbType.Text, lines.Select(l => l.Node).ToArray());
        AddArray(insert, "stream", NpgsqlDbType.Text, lines.Select(l => l.Stream).ToArray());
        AddArray(insert, "sequence", NpgsqlDbType.Bigint, lines.Select(l => l.Sequence).ToArray());
        AddArray(insert, "at", NpgsqlDbType.Bigint, lines.Select(l => l.At.ToUnixTimeMilliseconds()).ToArray());
        AddArray(insert, "level", NpgsqlDbType.Text, lines.Select(l => l.Level).ToArray());
        AddArray(insert, "app", NpgsqlDbType.Text, lines.Select(l => l.App).ToArray());
        AddArray(insert, "revision", NpgsqlDbType.Bigint, lines.Select(l => l.Revision).ToArray());
        AddArray(insert, "message", NpgsqlDbType.Text, lines.Select(l => l.Message).ToArray());
        var stored = await insert.ExecuteNonQueryAsync(cancellationToken);
        await transaction.CommitAsync(cancellationToken);
        return new IngestResult(stored, lines.Count - stored);
    }

    public async Task<(IReadOnlyList<LogRecord> Lines, long Cursor)> ListLogsAsync(LogQuery query, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(query);
        var filter = new StringBuilder("TRUE");
        if (query.App is not null)
        {
            filter.Append(" AND app = @app");
        }

        if (query.Node is not null)
        {
            filter.Append(" AND node = @node");
        }

        if (query.Since is not null)
        {
            filter.Append(" AND at_ms >= @since");
        }

        if (query.AgentOnly)
        {
            filter.Append(" AND app = ''");
        }

        var sql = query.AfterId is null
            ? $"SELECT * FROM (SELECT {LogColumns} FROM logs WHERE {filter} ORDER BY at_ms DESC, id DESC LIMIT @limit) AS newest ORDER BY at_ms, node, sequence"
            : $"SELECT {LogColumns} FROM logs WHERE id > @after AND {filter} ORDER BY id LIMIT @limit";
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken);
        // One snapshot for the lines and the newest id, so following on from it misses nothing.
        await using var transaction = await connection.BeginTransactionAsync(System.Data.IsolationLevel.RepeatableRead, cancellationToken);
        var lines = new List<LogRecord>();
        await using (var command = Command(connection, sql, ("app", query.App), ("node", query.Node), ("since", query.Since?.ToUnixTimeMilliseconds()),
            ("after", query.AfterId), ("limit", query.Limit)))
        await using (var reader = await command.ExecuteReaderAsync(cancellationToken))
        {
            while (await reader.ReadAsync(cancellationToken))
            {
                lines.Add(new LogRecord(reader.GetInt64(0), reader.GetString(1), reader.GetString(2), reader.GetInt64(3), DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(4)),
                    reader.GetString(5), reader.GetString(6), reader.GetInt64(7), reader.GetString(8)));
            }
        }

        long newest;
        await using (var max = Command(connection, "SELECT COALESCE(MAX(id), 0) FROM logs"))
        {
            newest = (long)(await max.ExecuteScalarAsync(cancellationToken))!;
        }

        await transaction.CommitAsync(cancellationToken);
        // Following: on from the last line returned, or where we were when nothing more matched
        // (but past lines that did not match, so they are not scanned again).
        var cursor = query.AfterId is { } after ? (lines.Count == query.Limit ? lines[^1].Id : Math.Max(after, newest)) : newest;
        return (lines, cursor);
    }

    public async Task PruneLogsAsync(DateTimeOffset before, CancellationToken cancellationToken)
    {
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken);
        await ExecuteAsync(connection, "DELETE FROM logs WHERE at_ms < @cutoff", cancellationToken, ("cutoff", before.ToUnixTimeMilliseconds()));
    }
}
