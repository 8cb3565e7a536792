using Microsoft.Data.Sqlite;
using Outpost.Core.Store;

namespace Outpost.Server.Store;

/// <summary>Log lines the nodes shipped.</summary>
public sealed partial class SqliteControlPlaneStore
{
    public async Task<IngestResult> IngestLogsAsync(IReadOnlyCollection<LogRecord> lines, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(lines);
        await _writeLock.WaitAsync(cancellationToken);
        try
        {
            await using var connection = await OpenAsync(cancellationToken);
            await using var transaction = connection.BeginTransaction(deferred: false);
            var stored = 0;
            // One prepared statement for the batch: only the values change per line.
            await using (var insert = Command(connection, transaction, """
                INSERT OR IGNORE INTO logs (node, stream, sequence, at_ms, level, app, revision, message)
                VALUES ($node, $stream, $seq, $at, $level, $app, $rev, $message)
                """, ("$node", ""), ("$stream", ""), ("$seq", 0L), ("$at", 0L), ("$level", ""), ("$app", ""), ("$rev", 0L), ("$message", "")))
            {
                await insert.PrepareAsync(cancellationToken);
                var p = insert.Parameters;
                foreach (var line in lines)
                {
                    p[0].Value = line.Node;
                    p[1].Value = line.Stream;
                    p[2].Value = line.Sequence;
                    p[3].Value = line.At.ToUnixTimeMilliseconds();
                    p[4].Value = line.Level;
                    p[5].Value = line.App;
                    p[6].Value = line.Revision;
                    p[7].Value = line.Message;
                    stored += insert.ExecuteNonQuery();
                }
            }

            await transaction.CommitAsync(cancellationToken);
            return new IngestResult(stored, lines.Count - stored);
        }
        finally
        {
            ReleaseWriteLock();
        }
    }

    public async Task<(IReadOnlyList<LogRecord> Lines, long Cursor)> ListLogsAsync(LogQuery query, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(query);
        await using var connection = await OpenAsync(cancellationToken);
        await using var transaction = connection.BeginTransaction(deferred: true); // a read: no write lock
        const string Filter = "($app IS NULL OR app = $app) AND ($node IS NULL OR node = $node) AND ($since IS NULL OR at_ms >= $since) AND ($agent = 0 OR app = '')";
        var sql = query.AfterId is null
            ? $"SELECT * FROM (SELECT {LogColumns} FROM logs WHERE {Filter} ORDER BY at_ms DESC, id DESC LIMIT $limit) ORDER BY at_ms, node, sequence"
            : $"SELECT {LogColumns} FROM logs WHERE id > $after AND {Filter} ORDER BY id LIMIT $limit";
        var lines = new List<LogRecord>();
        await using (var command = Command(connection, transaction, sql, ("$app", query.App), ("$node", query.Node), ("$since", query.Since?.ToUnixTimeMilliseconds()),
            ("$agent", query.AgentOnly ? 1 : 0), ("$after", query.AfterId), ("$limit", query.Limit)))
        await using (var reader = await command.ExecuteReaderAsync(cancellationToken))
        {
            while (await reader.ReadAsync(cancellationToken))
            {
                lines.Add(new LogRecord(reader.GetInt64(0), reader.GetString(1), reader.GetString(2), reader.GetInt64(3), DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(4)),
                    reader.GetString(5), reader.GetString(6), reader.GetInt64(7), reader.GetString(8)));
            }
        }

        long cursor;
        if (query.AfterId is { } after)
        {
            // Following: on from the last line returned, or where we were when nothing matched
            // (but past lines that did not match, so they are not scanned again).
            await using var max = Command(connection, transaction, "SELECT COALESCE(MAX(id), 0) FROM logs");
            var newest = (long)(await max.ExecuteScalarAsync(cancellationToken))!;
            cursor = lines.Count == query.Limit ? lines[^1].Id : Math.Max(after, newest);
        }
        else
        {
            await using var max = Command(connection, transaction, "SELECT COALESCE(MAX(id), 0) FROM logs");
            cursor = (long)(await max.ExecuteScalarAsync(cancellationToken))!;
        }

        return (lines, cursor);
    }

    public Task PruneLogsAsync(DateTimeOffset before, CancellationToken cancellationToken) =>
        ExecuteLockedAsync("DELETE FROM logs WHERE at_ms < $cutoff", cancellationToken, ("$cutoff", before.ToUnixTimeMilliseconds()));

    private const string LogColumns = "id, node, stream, sequence, at_ms, level, app, revision, message";
}
