using Npgsql;
using NpgsqlTypes;
using Outpost.Core.Store;

namespace Outpost.Server.Store;

/// <summary>Records the nodes publish: ingested in bulk, read by topic after a cursor.</summary>
public sealed partial class PostgresControlPlaneStore
{
    private GroupCommit<RecordIngest>? _ingests;

    /// <summary>The most record batches (of any nodes) one transaction takes.</summary>
    private const int IngestBatch = 256;

    /// <summary>
    /// Durable when the task completes. Batches that arrive together, from many nodes, share one
    /// transaction and so one flush of the log (<see cref="GroupCommit{T}"/>).
    /// </summary>
    public async Task<IngestResult> IngestAsync(string node, IReadOnlyList<IngestRecord> records, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(records);
        if (records.Count == 0)
        {
            return new IngestResult(0, 0);
        }

        var ingests = LazyInitializer.EnsureInitialized(ref _ingests, () => new GroupCommit<RecordIngest>(InsertRecordsAsync, IngestBatch));
        var ingest = new RecordIngest(node, records);
        await ingests.AddAsync(ingest, cancellationToken);
        return new IngestResult(ingest.Stored, records.Count - ingest.Stored);
    }

    private async Task InsertRecordsAsync(IReadOnlyList<RecordIngest> ingests)
    {
        await using var connection = await _dataSource.OpenConnectionAsync(CancellationToken.None);
        await using var transaction = await connection.BeginTransactionAsync(CancellationToken.None);
        await LockAsync(connection, LockKey.Records, CancellationToken.None);
        var ingested = _time.GetUtcNow().ToUnixTimeMilliseconds();
        foreach (var ingest in ingests)
        {
            // One statement for each node's batch: a column per array, rows taken in the order sent,
            // so the cursors of one node's records follow its sequence.
            var records = ingest.Records;
            await using var insert = Command(connection, """
                INSERT INTO records (node, sequence, topic, source, payload, created_ms, ingested_ms)
                SELECT @node, sequence, topic, source, payload, created_ms, @ingested
                FROM unnest(@sequence, @topic, @source, @payload, @created) WITH ORDINALITY AS r (sequence, topic, source, payload, created_ms, n)
                ORDER BY n
                ON CONFLICT (node, sequence) DO NOTHING
                """, ("node", ingest.Node), ("ingested", ingested));
            AddArray(insert, "sequence", NpgsqlDbType.Bigint, records.Select(r => r.Sequence).ToArray());
            AddArray(insert, "topic", NpgsqlDbType.Text, records.Select(r => r.Topic).ToArray());
            AddArray(insert, "source", NpgsqlDbType.Text, records.Select(r => r.Source).ToArray());
            AddArray(insert, "payload", NpgsqlDbType.Bytea, records.Select(r => r.Payload).ToArray());
            AddArray(insert, "created", NpgsqlDbType.Bigint, records.Select(r => r.CreatedAt.ToUnixTimeMilliseconds()).ToArray());
            ingest.Stored = await insert.ExecuteNonQueryAsync(CancellationToken.None);
        }

        await transaction.CommitAsync(CancellationToken.None);
    }

    public async Task<IReadOnlyList<StoredRecord>> ReadRecordsAsync(string topic, long afterCursor, int limit, string? node, CancellationToken cancellationToken)
    {
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken);
        await using var command = Command(connection, $"""
            SELECT cursor, node, sequence, topic, source, payload, created_ms, ingested_ms FROM records
            WHERE topic = @topic AND cursor > @after {(node is null ? "" : "AND node = @node")}
            ORDER BY cursor LIMIT @limit
            """, ("topic", topic), ("after", afterCursor), ("limit", limit), ("node", node));
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        var records = new List<StoredRecord>();
        while (await reader.ReadAsync(cancellationToken))
        {
            records.Add(new StoredRecord(reader.GetInt64(0), reader.GetString(1), reader.GetInt64(2), reader.GetString(3), reader.GetString(4),
                reader.GetFieldValue<byte[]>(5), DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(6)), DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(7))));
        }

        return records;
    }

    public async Task<IReadOnlyList<TopicSummary>> ListTopicsAsync(CancellationToken cancellationToken)
    {
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken);
        await using var command = Command(connection, """
            SELECT topic, COUNT(*), SUM(octet_length(payload)), COUNT(DISTINCT node)::integer, MAX(ingested_ms) FROM records GROUP BY topic ORDER BY topic
            """);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        var topics = new List<TopicSummary>();
        while (await reader.ReadAsync(cancellationToken))
        {
            topics.Add(new TopicSummary(reader.GetString(0), reader.GetInt64(1), reader.GetInt64(2), reader.GetInt32(3), DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(4))));
        }

        return topics;
    }

    /// <summary>One column of a bulk insert, typed, so an empty or all-null array still has a type.</summary>
    private static void AddArray<T>(NpgsqlCommand command, string name, NpgsqlDbType elementType, T[] values) =>
        command.Parameters.Add(new NpgsqlParameter<T[]>(name, NpgsqlDbType.Array | elementType) { TypedValue = values });
}
