using System.Text.Json;
using System.Text.Json.Nodes;
using Npgsql;
using Outpost.Core.Resources;
using Outpost.Core.Store;
using Outpost.Core.Tokens;

namespace Outpost.Server.Store;

/// <summary>
/// The store for server replicas: one PostgreSQL database shared by every replica. Nothing is
/// cached in process (another replica may have written since), and every id a reader follows
/// with a cursor is allocated under a transaction-scoped advisory lock taken first, so ids
/// become visible in the order they were allocated and a follower never steps over one that
/// commits later.
/// </summary>
public sealed partial class PostgresControlPlaneStore : IControlPlaneStore
{
    private readonly NpgsqlDataSource _dataSource;
    private readonly TimeProvider _time;

    /// <summary>Takes a connection string or a postgres:// URL (see <see cref="ConnectionStringFrom"/>).</summary>
    public PostgresControlPlaneStore(string connectionString, TimeProvider? time = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(connectionString);
        // The slim builder keeps the reflection-based mappings (dynamic JSON, records as tuples)
        // out of the NativeAOT binary; JSON lives in text columns, (de)serialised by the callers' contexts.
        var builder = new NpgsqlSlimDataSourceBuilder(ConnectionStringFrom(connectionString));
        builder.EnableArrays(); // bulk inserts pass one array per column
        builder.EnableTransportSecurity(); // sslmode=require and SCRAM channel binding
        _dataSource = builder.Build();
        _time = time ?? TimeProvider.System;
    }

    /// <summary>
    /// Keys of the transaction-scoped advisory locks ("outpost" in ASCII, then one byte per use).
    /// A transaction that allocates ids of a cursor-read sequence takes its key before anything
    /// else, and holds it until its commit is visible.
    /// </summary>
    private static class LockKey
    {
        private const long Prefix = 0x6F7574706F737400;

        /// <summary>Creating or migrating the schema.</summary>
        public const long Schema = Prefix | 1;

        /// <summary>The change log and so the global revision: resource writes, rollout saves, compaction.</summary>
        public const long Changes = Prefix | 2;

        public const long Records = Prefix | 3;

        public const long Logs = Prefix | 4;

        public const long Events = Prefix | 5;

        public const long Audit = Prefix | 6;

        /// <summary>Bucket revisions and the conflict log.</summary>
        public const long Buckets = Prefix | 7;

        /// <summary>Storing the first bootstrap set: see <see cref="ShareBootstrapAsync"/>.</summary>
        public const long Bootstrap = Prefix | 9;
    }

    public async Task<long> GetRevisionAsync(CancellationToken cancellationToken)
    {
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken);
        return await RevisionAsync(connection, cancellationToken);
    }

    public async Task<StoredResource?> GetAsync(string kind, string name, CancellationToken cancellationToken)
    {
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken);
        return await GetAsync(connection, kind, name, cancellationToken);
    }

    public Task<ResourcePage> ListAsync(string kind, CancellationToken cancellationToken) =>
        ListAsync(kind, new Dictionary<string, string>(), cancellationToken);

    public async Task<ResourcePage> ListAsync(string kind, IReadOnlyDictionary<string, string> labelSelector, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(labelSelector);
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken);
        // One snapshot for both reads, so the items and the revision agree.
        await using var transaction = await connection.BeginTransactionAsync(System.Data.IsolationLevel.RepeatableRead, cancellationToken);
        var revision = await RevisionAsync(connection, cancellationToken);
        var items = new List<StoredResource>();
        // Containment of the selector in the labels (jsonb @>): rows it leaves out are not sent.
        await using (var command = labelSelector.Count == 0
            ? Command(connection, $"SELECT {Columns} FROM resources WHERE kind = @kind ORDER BY name", ("kind", kind))
            : Command(connection, $"SELECT {Columns} FROM resources WHERE kind = @kind AND labels::jsonb @> @selector::jsonb ORDER BY name",
                ("kind", kind), ("selector", Serialize(labelSelector))))
        await using (var reader = await command.ExecuteReaderAsync(cancellationToken))
        {
            while (await reader.ReadAsync(cancellationToken))
            {
                items.Add(Read(reader));
            }
        }

        await transaction.CommitAsync(cancellationToken);
        return new ResourcePage(revision, items);
    }

    public async Task<IReadOnlyList<WriteResult>> WriteAsync(IReadOnlyList<ResourceWrite> writes, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(writes);
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        // Every write takes the change-log lock, even one that turns out to change nothing: the
        // checks below (exists? expected version?) must see what the writer before it committed.
        await LockAsync(connection, LockKey.Changes, cancellationToken);
        var results = new List<WriteResult>(writes.Count);
        foreach (var write in writes)
        {
            results.Add(await WriteOneAsync(connection, write, cancellationToken));
        }

        var revision = results.Where(r => r.Outcome != WriteOutcome.Unchanged).Select(r => r.Resource.ResourceVersion).DefaultIfEmpty().Max();
        await NotifyAsync(connection, ChangesChannel, revision, cancellationToken);
        await transaction.CommitAsync(cancellationToken);
        Changes.Publish(revision);
        return results;
    }

    private async Task<WriteResult> WriteOneAsync(NpgsqlConnection connection, ResourceWrite write, CancellationToken cancellationToken)
    {
        var existing = await GetAsync(connection, write.Kind, write.Name, cancellationToken);
        if (write.ExpectedResourceVersion is { } expected && existing is not null && existing.ResourceVersion != expected)
        {
            throw new StoreException(StoreError.Conflict, write.Kind, write.Name,
                $"{write.Kind} \"{write.Name}\" was modified (resourceVersion {existing.ResourceVersion}, expected {expected}); read it again and retry");
        }

        switch (write.Op)
        {
            case WriteOp.Delete:
                if (existing is null)
                {
                    throw NotFound(write);
                }

                var deleteRevision = await AppendChangeAsync(connection, write.Kind, write.Name, ChangeOp.Deleted, cancellationToken);
                await ExecuteAsync(connection, "DELETE FROM resources WHERE kind = @kind AND name = @name", cancellationToken, ("kind", write.Kind), ("name", write.Name));
                if (write.Kind == ResourceKind.Node.Kind)
                {
                    // A deleted node's certificates and credentials die with it, in the same transaction.
                    await ExecuteAsync(connection, "DELETE FROM node_certificates WHERE node = @name; DELETE FROM tokens WHERE kind = @nodeKind AND subject = @name; DELETE FROM node_presence WHERE node = @name",
                        cancellationToken, ("name", write.Name), ("nodeKind", (int)TokenKind.Node));
                }

                if (write.Kind == ResourceKind.Application.Kind)
                {
                    await ExecuteAsync(connection, "DELETE FROM app_revisions WHERE app = @name; DELETE FROM rollouts WHERE app = @name", cancellationToken, ("name", write.Name));
                }

                if (write.Kind == ResourceKind.Bucket.Kind)
                {
                    // A bucket's data goes with it, in the same transaction; the bucket lock (always
                    // taken after this one) keeps a merge in flight from leaving entries behind.
                    await LockAsync(connection, LockKey.Buckets, cancellationToken);
                    await ExecuteAsync(connection, "DELETE FROM bucket_entries WHERE bucket = @name; DELETE FROM bucket_conflicts WHERE bucket = @name", cancellationToken,
                        ("name", write.Name));
                }

                return new WriteResult(WriteOutcome.Deleted, existing with { ResourceVersion = deleteRevision });

            case WriteOp.Create when existing is not null:
                throw new StoreException(StoreError.AlreadyExists, write.Kind, write.Name, $"{write.Kind} \"{write.Name}\" already exists");

            case WriteOp.Replace when existing is null:
                throw NotFound(write);
        }

        var labels = Serialize(write.Labels);
        var annotations = Serialize(write.Annotations);
        if (existing is not null)
        {
            var specChanged = existing.SpecJson != write.SpecJson;
            if (!specChanged && Serialize(existing.Labels) == labels && Serialize(existing.Annotations) == annotations)
            {
                return new WriteResult(WriteOutcome.Unchanged, existing);
            }

            var revision = await AppendChangeAsync(connection, write.Kind, write.Name, ChangeOp.Upserted, cancellationToken);
            var updated = existing with
            {
                ResourceVersion = revision,
                Generation = existing.Generation + (specChanged ? 1 : 0),
                Labels = Copy(write.Labels),
                Annotations = Copy(write.Annotations),
                SpecJson = write.SpecJson,
            };
            await ExecuteAsync(connection, """
                UPDATE resources SET resource_version = @rv, generation = @gen, labels = @labels, annotations = @annotations, spec = @spec
                WHERE kind = @kind AND name = @name
                """, cancellationToken,
                ("rv", revision), ("gen", updated.Generation), ("labels", labels), ("annotations", annotations),
                ("spec", write.SpecJson), ("kind", write.Kind), ("name", write.Name));
            if (specChanged)
            {
                await RecordRevisionAsync(connection, updated, cancellationToken);
            }

            return new WriteResult(WriteOutcome.Configured, updated);
        }

        var createRevision = await AppendChangeAsync(connection, write.Kind, write.Name, ChangeOp.Upserted, cancellationToken);
        var created = new StoredResource
        {
            Kind = write.Kind,
            Name = write.Name,
            Uid = Guid.NewGuid().ToString(),
            ResourceVersion = createRevision,
            Generation = 1,
            CreationTimestamp = TruncateToSeconds(_time.GetUtcNow()),
            Labels = Copy(write.Labels),
            Annotations = Copy(write.Annotations),
            SpecJson = write.SpecJson,
        };
        await ExecuteAsync(connection, """
            INSERT INTO resources (kind, name, uid, resource_version, generation, created_at, labels, annotations, spec, status)
            VALUES (@kind, @name, @uid, @rv, 1, @created, @labels, @annotations, @spec, NULL)
            """, cancellationToken,
            ("kind", write.Kind), ("name", write.Name), ("uid", created.Uid), ("rv", createRevision), ("created", created.CreationTimestamp.ToUniversalTime()),
            ("labels", labels), ("annotations", annotations), ("spec", write.SpecJson));
        await RecordRevisionAsync(connection, created, cancellationToken);
        return new WriteResult(WriteOutcome.Created, created);
    }

    public async Task UpdateStatusAsync(string kind, string name, string statusJson, CancellationToken cancellationToken)
    {
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken);
        var rows = await ExecuteAsync(connection, "UPDATE resources SET status = @status WHERE kind = @kind AND name = @name", cancellationToken,
            ("status", statusJson), ("kind", kind), ("name", name));
        if (rows == 0)
        {
            throw new StoreException(StoreError.NotFound, kind, name, $"{kind} \"{name}\" not found");
        }
    }

    public async Task SetStatusFieldsAsync(string kind, string name, JsonObject fields, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(fields);
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken);
        // jsonb's || replaces the top-level fields it is given and keeps the others.
        var rows = await ExecuteAsync(connection, "UPDATE resources SET status = (COALESCE(status, '{}')::jsonb || @fields::jsonb)::text WHERE kind = @kind AND name = @name",
            cancellationToken, ("fields", fields.ToJsonString()), ("kind", kind), ("name", name));
        if (rows == 0)
        {
            throw new StoreException(StoreError.NotFound, kind, name, $"{kind} \"{name}\" not found");
        }
    }

    public async Task<IReadOnlyList<ResourceChange>> ListChangesAsync(long afterRevision, int limit, CancellationToken cancellationToken)
    {
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken);
        await using var command = Command(connection, "SELECT revision, kind, name, op FROM changes WHERE revision > @after ORDER BY revision LIMIT @limit",
            ("after", afterRevision), ("limit", limit));
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        var changes = new List<ResourceChange>();
        while (await reader.ReadAsync(cancellationToken))
        {
            changes.Add(new ResourceChange(reader.GetInt64(0), reader.GetString(1), reader.GetString(2), (ChangeOp)reader.GetInt32(3)));
        }

        return changes;
    }

    public async Task CompactChangesAsync(long throughRevision, CancellationToken cancellationToken)
    {
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        await LockAsync(connection, LockKey.Changes, cancellationToken);
        // The newest change is never dropped: it is what the global revision counts from.
        await ExecuteAsync(connection, "DELETE FROM changes WHERE revision <= @through AND revision < (SELECT MAX(revision) FROM changes)",
            cancellationToken, ("through", throughRevision));
        var floor = Math.Min(throughRevision, await RevisionAsync(connection, cancellationToken) - 1);
        await ExecuteAsync(connection, """
            INSERT INTO store_meta (key, value) VALUES ('compacted', @through)
            ON CONFLICT (key) DO UPDATE SET value = GREATEST(store_meta.value, excluded.value)
            """, cancellationToken, ("through", floor));
        await transaction.CommitAsync(cancellationToken);
    }

    public async Task<long> GetCompactedRevisionAsync(CancellationToken cancellationToken)
    {
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken);
        await using var command = Command(connection, "SELECT value FROM store_meta WHERE key = 'compacted'");
        return await command.ExecuteScalarAsync(cancellationToken) is long value ? Math.Max(0, value) : 0;
    }

    public async Task<NodeInventory?> GetNodeInventoryAsync(string node, CancellationToken cancellationToken)
    {
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken);
        await using var command = Command(connection, "SELECT revision, resources FROM node_inventory WHERE node = @node", ("node", node));
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        return await reader.ReadAsync(cancellationToken)
            ? new NodeInventory(reader.GetInt64(0), JsonSerializer.Deserialize(reader.GetString(1), CoreJson.Default.DictionaryStringInt64) ?? [])
            : null;
    }

    public async Task SaveNodeInventoryAsync(string node, NodeInventory inventory, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(inventory);
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken);
        await ExecuteAsync(connection, """
            INSERT INTO node_inventory (node, revision, resources) VALUES (@node, @rev, @json)
            ON CONFLICT (node) DO UPDATE SET revision = excluded.revision, resources = excluded.resources
            """, cancellationToken,
            ("node", node), ("rev", inventory.Revision), ("json", JsonSerializer.Serialize(inventory.Resources, CoreJson.Default.IReadOnlyDictionaryStringInt64)));
    }

    public async Task<bool> PutBlobAsync(string digest, ReadOnlyMemory<byte> content, CancellationToken cancellationToken)
    {
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken);
        var rows = await ExecuteAsync(connection,
            "INSERT INTO blobs (digest, size, content, created_at) VALUES (@digest, @size, @content, @at) ON CONFLICT (digest) DO NOTHING",
            cancellationToken, ("digest", digest), ("size", (long)content.Length), ("content", content), ("at", _time.GetUtcNow().ToUniversalTime()));
        return rows > 0;
    }

    public async Task<long?> GetBlobSizeAsync(string digest, CancellationToken cancellationToken)
    {
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken);
        await using var command = Command(connection, "SELECT size FROM blobs WHERE digest = @digest", ("digest", digest));
        return await command.ExecuteScalarAsync(cancellationToken) is long size ? size : null;
    }

    public async Task<int> ReadBlobAsync(string digest, long offset, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken);
        // Content is stored uncompressed (STORAGE EXTERNAL), so the slice reads only its own chunks.
        // A bytea holds at most 1 GB: an offset past int range is past the end.
        await using var command = Command(connection, "SELECT substring(content FROM @start FOR @length) FROM blobs WHERE digest = @digest",
            ("start", (int)Math.Min(offset + 1, int.MaxValue)), ("length", buffer.Length), ("digest", digest));
        var result = await command.ExecuteScalarAsync(cancellationToken);
        if (result is not byte[] bytes)
        {
            throw new StoreException(StoreError.NotFound, "Blob", digest, $"blob {digest} not found");
        }

        bytes.CopyTo(buffer);
        return bytes.Length;
    }

    public async Task RecordNodeCertificateAsync(string node, string serial, DateTimeOffset notAfter, CancellationToken cancellationToken)
    {
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken);
        await ExecuteAsync(connection, "INSERT INTO node_certificates (serial, node, not_after_ms) VALUES (@serial, @node, @notAfter)", cancellationToken,
            ("serial", serial), ("node", node), ("notAfter", notAfter.ToUnixTimeMilliseconds()));
    }

    public async Task<bool> IsNodeCertificateCurrentAsync(string node, string serial, CancellationToken cancellationToken)
    {
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken);
        await using var command = Command(connection, "SELECT EXISTS (SELECT 1 FROM node_certificates WHERE serial = @serial AND node = @node)", ("serial", serial), ("node", node));
        return await command.ExecuteScalarAsync(cancellationToken) is true;
    }

    public async ValueTask DisposeAsync()
    {
        // Entries already queued for the audit log are written (or failed) before the pool goes.
        if (_audits is { } audits)
        {
            await audits.Drained;
        }

        if (_ingests is { } ingests)
        {
            await ingests.Drained;
        }

        await StopFollowingAsync();

        await _dataSource.DisposeAsync();
    }

    private const string Columns = "kind, name, uid, resource_version, generation, created_at, labels, annotations, spec, status";

    /// <summary>
    /// Takes a transaction-scoped advisory lock. It is held until the transaction ends, and
    /// PostgreSQL releases it only after the commit is visible to every new snapshot.
    /// </summary>
    private static async Task LockAsync(NpgsqlConnection connection, long key, CancellationToken cancellationToken)
    {
        await using var command = Command(connection, "SELECT pg_advisory_xact_lock(@key)", ("key", key));
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    private static async Task<StoredResource?> GetAsync(NpgsqlConnection connection, string kind, string name, CancellationToken cancellationToken)
    {
        await using var command = Command(connection, $"SELECT {Columns} FROM resources WHERE kind = @kind AND name = @name", ("kind", kind), ("name", name));
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        return await reader.ReadAsync(cancellationToken) ? Read(reader) : null;
    }

    private static async Task<long> RevisionAsync(NpgsqlConnection connection, CancellationToken cancellationToken)
    {
        await using var command = Command(connection, "SELECT COALESCE(MAX(revision), 0) FROM changes");
        return (long)(await command.ExecuteScalarAsync(cancellationToken))!;
    }

    /// <summary>
    /// Appends to the change log under <see cref="LockKey.Changes"/> (the caller holds it): the next
    /// revision is one past the newest, so revisions stay dense even when a transaction rolls back.
    /// </summary>
    private async Task<long> AppendChangeAsync(NpgsqlConnection connection, string kind, string name, ChangeOp op, CancellationToken cancellationToken)
    {
        await using var command = Command(connection, """
            INSERT INTO changes (revision, kind, name, op, at)
            SELECT COALESCE(MAX(revision), 0) + 1, @kind, @name, @op, @at FROM changes
            RETURNING revision
            """, ("kind", kind), ("name", name), ("op", (int)op), ("at", _time.GetUtcNow().ToUniversalTime()));
        return (long)(await command.ExecuteScalarAsync(cancellationToken))!;
    }

    private static StoredResource Read(NpgsqlDataReader reader) => new()
    {
        Kind = reader.GetString(0),
        Name = reader.GetString(1),
        Uid = reader.GetString(2),
        ResourceVersion = reader.GetInt64(3),
        Generation = reader.GetInt64(4),
        CreationTimestamp = reader.GetFieldValue<DateTimeOffset>(5),
        Labels = Deserialize(reader.GetString(6)),
        Annotations = Deserialize(reader.GetString(7)),
        SpecJson = reader.GetString(8),
        StatusJson = reader.IsDBNull(9) ? null : reader.GetString(9),
    };

    private static NpgsqlCommand Command(NpgsqlConnection connection, string sql, params (string Name, object? Value)[] parameters)
    {
        // Commands join the connection's transaction, if it has one, by themselves.
        var command = new NpgsqlCommand(sql, connection);
        foreach (var (name, value) in parameters)
        {
            command.Parameters.AddWithValue(name, value ?? DBNull.Value);
        }

        return command;
    }

    private static async Task<int> ExecuteAsync(NpgsqlConnection connection, string sql, CancellationToken cancellationToken, params (string Name, object? Value)[] parameters)
    {
        await using var command = Command(connection, sql, parameters);
        return await command.ExecuteNonQueryAsync(cancellationToken);
    }

    private static StoreException NotFound(ResourceWrite write) =>
        new(StoreError.NotFound, write.Kind, write.Name, $"{write.Kind} \"{write.Name}\" not found");

    private static DateTimeOffset TruncateToSeconds(DateTimeOffset value) => new(value.Ticks - (value.Ticks % TimeSpan.TicksPerSecond), value.Offset);

    private static string Serialize(IReadOnlyDictionary<string, string> map) =>
        JsonSerializer.Serialize(new SortedDictionary<string, string>(map.ToDictionary(), StringComparer.Ordinal), CoreJson.Default.SortedDictionaryStringString);

    private static Dictionary<string, string> Deserialize(string json) =>
        JsonSerializer.Deserialize(json, CoreJson.Default.DictionaryStringString) ?? [];

    private static Dictionary<string, string> Copy(IReadOnlyDictionary<string, string> map) => new(map, StringComparer.Ordinal);
}
