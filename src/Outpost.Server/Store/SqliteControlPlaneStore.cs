using System.Collections.Concurrent;
using System.Globalization;
using System.Runtime.CompilerServices;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Data.Sqlite;
using Outpost.Core.Resources;
using Outpost.Core.Store;
using Outpost.Core.Tokens;

namespace Outpost.Server.Store;

/// <summary>
/// The single-server store: one SQLite file in WAL mode. Writes are serialised in-process
/// and run in IMMEDIATE transactions, so a batch is all or nothing and revisions never interleave.
/// </summary>
public sealed partial class SqliteControlPlaneStore : IControlPlaneStore
{
    private readonly string _connectionString;
    private readonly TimeProvider _time;
    private readonly WriteGate _writeLock = new();
    private readonly SqliteWriter _writer;
    private readonly SqliteWriter _durable;

    public SqliteControlPlaneStore(string path, TimeProvider? time = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        _connectionString = new SqliteConnectionStringBuilder
        {
            DataSource = path,
            Mode = SqliteOpenMode.ReadWriteCreate,
            Pooling = true,
            DefaultTimeout = 30,
        }.ToString();
        _time = time ?? TimeProvider.System;
        _writer = new SqliteWriter(OpenAsync);
        _durable = new SqliteWriter(OpenDurableAsync);
    }

    /// <summary>
    /// Runs a one-statement write under the same in-process lock as the transactions, so SQLite
    /// never sees two writers from this server: a busy database makes its driver sleep and retry,
    /// which a hundred nodes reporting at once turn into seconds.
    /// </summary>
    private async Task<int> ExecuteLockedAsync(string sql, CancellationToken cancellationToken, params (string Name, object? Value)[] parameters)
    {
        await _writeLock.WaitAsync(cancellationToken);
        try
        {
            return await _writer.ExecuteAsync(sql, parameters, cancellationToken);
        }
        finally
        {
            ReleaseWriteLock();
        }
    }

    /// <summary>Runs <paramref name="sql"/> once per item, all in one write transaction under the write lock.</summary>
    private async Task ExecuteEachLockedAsync<T>(IReadOnlyCollection<T> items, string sql, Func<T, (string Name, object? Value)[]> parameters, CancellationToken cancellationToken)
    {
        if (items.Count == 0)
        {
            return;
        }

        await _writeLock.WaitAsync(cancellationToken);
        try
        {
            await _writer.ExecuteEachAsync(items, sql, parameters, cancellationToken);
        }
        finally
        {
            ReleaseWriteLock();
        }
    }

    public async Task InitializeAsync(CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync(cancellationToken);
        await ExecuteAsync(connection, null, """
            PRAGMA journal_mode = WAL;
            CREATE TABLE IF NOT EXISTS resources (
              kind TEXT NOT NULL,
              name TEXT NOT NULL,
              uid TEXT NOT NULL,
              resource_version INTEGER NOT NULL,
              generation INTEGER NOT NULL,
              created_at TEXT NOT NULL,
              labels TEXT NOT NULL,
              annotations TEXT NOT NULL,
              spec TEXT NOT NULL,
              status TEXT NULL,
              PRIMARY KEY (kind, name)
            );
            CREATE TABLE IF NOT EXISTS changes (
              revision INTEGER PRIMARY KEY AUTOINCREMENT,
              kind TEXT NOT NULL,
              name TEXT NOT NULL,
              op INTEGER NOT NULL,
              at TEXT NOT NULL
            );
            CREATE TABLE IF NOT EXISTS blobs (
              digest TEXT PRIMARY KEY,
              size INTEGER NOT NULL,
              content BLOB NOT NULL,
              created_at TEXT NOT NULL
            );
            CREATE TABLE IF NOT EXISTS records (
              cursor INTEGER PRIMARY KEY AUTOINCREMENT,
              node TEXT NOT NULL,
              sequence INTEGER NOT NULL,
              topic TEXT NOT NULL,
              source TEXT NOT NULL,
              payload BLOB NOT NULL,
              created_ms INTEGER NOT NULL,
              ingested_ms INTEGER NOT NULL,
              UNIQUE (node, sequence)
            );
            CREATE INDEX IF NOT EXISTS records_by_topic ON records (topic, cursor);
            CREATE TABLE IF NOT EXISTS node_inventory (
              node TEXT PRIMARY KEY,
              revision INTEGER NOT NULL,
              resources TEXT NOT NULL
            );
            CREATE TABLE IF NOT EXISTS store_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
            CREATE TABLE IF NOT EXISTS tokens (
              id TEXT PRIMARY KEY,
              kind INTEGER NOT NULL,
              secret_hash TEXT NOT NULL,
              subject TEXT NULL,
              created_at TEXT NOT NULL,
              expires_at TEXT NULL,
              description TEXT NULL
            );
            CREATE TABLE IF NOT EXISTS bucket_entries (
              bucket TEXT NOT NULL,
              scope TEXT NOT NULL,
              key TEXT NOT NULL,
              value BLOB NULL,
              deleted INTEGER NOT NULL,
              stamp TEXT NOT NULL,
              base TEXT NULL,
              revision INTEGER NOT NULL,
              updated_ms INTEGER NOT NULL,
              PRIMARY KEY (bucket, scope, key)
            );
            CREATE INDEX IF NOT EXISTS bucket_entries_by_revision ON bucket_entries (bucket, scope, revision);
            CREATE TABLE IF NOT EXISTS bucket_conflicts (
              id INTEGER PRIMARY KEY AUTOINCREMENT,
              bucket TEXT NOT NULL,
              scope TEXT NOT NULL,
              key TEXT NOT NULL,
              winner_value BLOB NULL,
              winner_deleted INTEGER NOT NULL,
              winner_stamp TEXT NOT NULL,
              loser_value BLOB NULL,
              loser_deleted INTEGER NOT NULL,
              loser_stamp TEXT NOT NULL,
              at_ms INTEGER NOT NULL
            );
            CREATE INDEX IF NOT EXISTS bucket_conflicts_by_bucket ON bucket_conflicts (bucket, id);
            CREATE TABLE IF NOT EXISTS app_revisions (
              app TEXT NOT NULL,
              revision INTEGER NOT NULL,
              digest TEXT NOT NULL,
              spec TEXT NOT NULL,
              created_ms INTEGER NOT NULL,
              PRIMARY KEY (app, revision)
            );
            CREATE TABLE IF NOT EXISTS audit (
              id INTEGER PRIMARY KEY AUTOINCREMENT,
              at_ms INTEGER NOT NULL,
              actor TEXT NOT NULL,
              role TEXT NOT NULL,
              verb TEXT NOT NULL,
              path TEXT NOT NULL,
              status INTEGER NOT NULL,
              detail TEXT NULL
            );
            CREATE TABLE IF NOT EXISTS node_certificates (
              serial TEXT PRIMARY KEY,
              node TEXT NOT NULL,
              not_after_ms INTEGER NOT NULL
            );
            CREATE INDEX IF NOT EXISTS node_certificates_by_node ON node_certificates (node);
            CREATE TABLE IF NOT EXISTS events (
              id INTEGER PRIMARY KEY AUTOINCREMENT,
              at_ms INTEGER NOT NULL,
              kind TEXT NOT NULL,
              name TEXT NOT NULL,
              type TEXT NOT NULL,
              reason TEXT NOT NULL,
              message TEXT NOT NULL
            );
            CREATE INDEX IF NOT EXISTS events_by_name ON events (name, id);
            CREATE TABLE IF NOT EXISTS app_minutes (
              app TEXT NOT NULL,
              revision INTEGER NOT NULL,
              node TEXT NOT NULL,
              minute_ms INTEGER NOT NULL,
              requests INTEGER NOT NULL,
              client_errors INTEGER NOT NULL,
              server_errors INTEGER NOT NULL,
              timeouts INTEGER NOT NULL,
              limit_hits INTEGER NOT NULL,
              latency_sum REAL NOT NULL,
              buckets TEXT NOT NULL,
              memory_peak INTEGER NOT NULL,
              PRIMARY KEY (app, revision, node, minute_ms)
            );
            CREATE INDEX IF NOT EXISTS app_minutes_by_minute ON app_minutes (minute_ms);
            CREATE TABLE IF NOT EXISTS node_minutes (
              node TEXT NOT NULL,
              minute_ms INTEGER NOT NULL,
              usage TEXT NOT NULL,
              PRIMARY KEY (node, minute_ms)
            );
            CREATE INDEX IF NOT EXISTS node_minutes_by_minute ON node_minutes (minute_ms);
            CREATE TABLE IF NOT EXISTS logs (
              id INTEGER PRIMARY KEY AUTOINCREMENT,
              node TEXT NOT NULL,
              stream TEXT NOT NULL,
              sequence INTEGER NOT NULL,
              at_ms INTEGER NOT NULL,
              level TEXT NOT NULL,
              app TEXT NOT NULL,
              revision INTEGER NOT NULL,
              message TEXT NOT NULL,
              UNIQUE (node, stream, sequence)
            );
            CREATE INDEX IF NOT EXISTS logs_by_time ON logs (at_ms);
            CREATE INDEX IF NOT EXISTS logs_by_app ON logs (app, at_ms);
            CREATE TABLE IF NOT EXISTS alerts (
              rule TEXT NOT NULL,
              target TEXT NOT NULL,
              state TEXT NOT NULL,
              value REAL NOT NULL,
              message TEXT NOT NULL,
              active_ms INTEGER NOT NULL,
              fired_ms INTEGER NULL,
              resolved_ms INTEGER NULL,
              PRIMARY KEY (rule, target)
            );
            CREATE TABLE IF NOT EXISTS leases (
              name TEXT PRIMARY KEY,
              holder TEXT NOT NULL,
              epoch INTEGER NOT NULL,
              expires_ms INTEGER NOT NULL
            );
            CREATE TABLE IF NOT EXISTS traffic_samples (
              id INTEGER PRIMARY KEY AUTOINCREMENT,
              app TEXT NOT NULL,
              revision INTEGER NOT NULL,
              node TEXT NOT NULL,
              replica TEXT NOT NULL,
              at_ms INTEGER NOT NULL,
              requests INTEGER NOT NULL,
              server_errors INTEGER NOT NULL
            );
            CREATE INDEX IF NOT EXISTS traffic_samples_by_time ON traffic_samples (at_ms);
            CREATE INDEX IF NOT EXISTS traffic_samples_by_app ON traffic_samples (app, revision, at_ms);
            CREATE TABLE IF NOT EXISTS node_presence (
              node TEXT PRIMARY KEY,
              replica TEXT NOT NULL,
              session INTEGER NOT NULL,
              since_ms INTEGER NOT NULL,
              connected INTEGER NOT NULL,
              beating INTEGER NOT NULL,
              last_beat_ms INTEGER NOT NULL
            );
            CREATE TABLE IF NOT EXISTS rollouts (
              app TEXT PRIMARY KEY,
              revision INTEGER NOT NULL,
              stable INTEGER NOT NULL,
              state TEXT NOT NULL
            );
            CREATE TABLE IF NOT EXISTS image_tags (
              repository TEXT NOT NULL,
              tag TEXT NOT NULL,
              digest TEXT NOT NULL,
              updated_ms INTEGER NOT NULL,
              PRIMARY KEY (repository, tag)
            );
            """, cancellationToken);
        await MigrateTokensAsync(connection, cancellationToken);
        await MigrateRevisionsAsync(connection, cancellationToken);
        Changes.Publish(await RevisionAsync(connection, null, cancellationToken));
        BucketChanges.Publish(await MetaAsync(connection, null, "bucket_revision", cancellationToken));
    }

    /// <summary>Moved by this process's commits: one server per SQLite file, so there are no others.</summary>
    public ChangeFeed Changes { get; } = new();

    public ChangeFeed BucketChanges { get; } = new();

    // Counted up after each commit that may change what a cache below holds: a value read under an
    // older count is read again. Every write goes through this process's write lock (one writer),
    // and only AppendChangeAsync moves the revision (see ReleaseWriteLock).
    private long _revisionEpoch;
    private long _tokenEpoch;
    private (long Epoch, long Revision)? _revision;
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, (TokenRecord Record, long Epoch, long At)> _tokens = new(StringComparer.Ordinal);

    /// <summary>How long a token read stays cached, its writes aside (which drop it at once).</summary>
    private static readonly TimeSpan TokenCacheFor = TimeSpan.FromSeconds(5);

    /// <summary>The latest revision: read once per resource write (the proxy and the relay ask on every request).</summary>
    public async Task<long> GetRevisionAsync(CancellationToken cancellationToken)
    {
        var epoch = Interlocked.Read(ref _revisionEpoch);
        if (_revision is { } cached && cached.Epoch == epoch)
        {
            return cached.Revision;
        }

        await using var connection = await OpenAsync(cancellationToken);
        var revision = await RevisionAsync(connection, null, cancellationToken);
        _revision = (epoch, revision);
        return revision;
    }

    public async Task<StoredResource?> GetAsync(string kind, string name, CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync(cancellationToken);
        return await GetAsync(connection, null, kind, name, cancellationToken);
    }

    public Task<ResourcePage> ListAsync(string kind, CancellationToken cancellationToken) =>
        ListAsync(kind, new Dictionary<string, string>(), cancellationToken);

    public async Task<ResourcePage> ListAsync(string kind, IReadOnlyDictionary<string, string> labelSelector, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(labelSelector);
        // Each pair a condition on the labels' JSON: rows the selector leaves out are never read
        // whole (a node's status is a kilobyte or more). A key SQLite's path syntax cannot quote
        // is matched here instead, after the read.
        var where = new StringBuilder("kind = $kind");
        var parameters = new List<(string Name, object? Value)> { ("$kind", kind) };
        var afterwards = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var (key, value) in labelSelector)
        {
            if (key.Contains('"', StringComparison.Ordinal) || key.Contains('\\', StringComparison.Ordinal))
            {
                afterwards[key] = value;
                continue;
            }

            var i = parameters.Count;
            where.Append(CultureInfo.InvariantCulture, $" AND json_extract(labels, $p{i}) IS $v{i}");
            parameters.Add(($"$p{i}", $"$.\"{key}\""));
            parameters.Add(($"$v{i}", value));
        }

        await using var connection = await OpenAsync(cancellationToken);
        // One read transaction so the items and the revision agree. Deferred: a read takes no write
        // lock (Microsoft.Data.Sqlite begins IMMEDIATE by default), so reads never queue behind
        // writes or each other in WAL mode.
        await using var transaction = connection.BeginTransaction(deferred: true);
        var revision = await RevisionAsync(connection, transaction, cancellationToken);
        await using var command = Command(connection, transaction, $"SELECT {Columns} FROM resources WHERE {where} ORDER BY name", [.. parameters]);
        var items = new List<StoredResource>();
        await using (var reader = await command.ExecuteReaderAsync(cancellationToken))
        {
            while (await reader.ReadAsync(cancellationToken))
            {
                var item = Read(reader);
                if (afterwards.Count == 0 || afterwards.All(p => item.Labels.TryGetValue(p.Key, out var v) && v == p.Value))
                {
                    items.Add(item);
                }
            }
        }

        await transaction.CommitAsync(cancellationToken);
        return new ResourcePage(revision, items);
    }

    public async Task<IReadOnlyList<WriteResult>> WriteAsync(IReadOnlyList<ResourceWrite> writes, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(writes);
        await _writeLock.WaitAsync(cancellationToken);
        try
        {
            await using var connection = await OpenAsync(cancellationToken);
            await using var transaction = connection.BeginTransaction(deferred: false);
            var results = new List<WriteResult>(writes.Count);
            foreach (var write in writes)
            {
                results.Add(await WriteOneAsync(connection, transaction, write, cancellationToken));
            }

            await transaction.CommitAsync(cancellationToken);
            PublishAppended();
            return results;
        }
        finally
        {
            Interlocked.Increment(ref _tokenEpoch); // deleting a node deletes its tokens
            ReleaseWriteLock();
        }
    }

    private async Task<WriteResult> WriteOneAsync(SqliteConnection connection, SqliteTransaction transaction, ResourceWrite write, CancellationToken cancellationToken)
    {
        var existing = await GetAsync(connection, transaction, write.Kind, write.Name, cancellationToken);
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

                var deleteRevision = await AppendChangeAsync(connection, transaction, write.Kind, write.Name, ChangeOp.Deleted, cancellationToken);
                await ExecuteAsync(connection, transaction, "DELETE FROM resources WHERE kind = $kind AND name = $name", cancellationToken,
                    ("$kind", write.Kind), ("$name", write.Name));
                if (write.Kind == ResourceKind.Node.Kind)
                {
                    // A deleted node's certificates and credentials die with it, in the same transaction.
                    await ExecuteAsync(connection, transaction, "DELETE FROM node_certificates WHERE node = $name; DELETE FROM tokens WHERE kind = $nodeKind AND subject = $name; DELETE FROM node_presence WHERE node = $name",
                        cancellationToken, ("$name", write.Name), ("$nodeKind", (int)TokenKind.Node));
                }

                if (write.Kind == ResourceKind.Application.Kind)
                {
                    await ExecuteAsync(connection, transaction, "DELETE FROM app_revisions WHERE app = $name; DELETE FROM rollouts WHERE app = $name", cancellationToken, ("$name", write.Name));
                }

                if (write.Kind == ResourceKind.Bucket.Kind)
                {
                    // A bucket's data goes with it, in the same transaction.
                    await ExecuteAsync(connection, transaction, "DELETE FROM bucket_entries WHERE bucket = $name; DELETE FROM bucket_conflicts WHERE bucket = $name", cancellationToken,
                        ("$name", write.Name));
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

            var revision = await AppendChangeAsync(connection, transaction, write.Kind, write.Name, ChangeOp.Upserted, cancellationToken);
            var updated = existing with
            {
                ResourceVersion = revision,
                Generation = existing.Generation + (specChanged ? 1 : 0),
                Labels = Copy(write.Labels),
                Annotations = Copy(write.Annotations),
                SpecJson = write.SpecJson,
            };
            await ExecuteAsync(connection, transaction, """
                UPDATE resources SET resource_version = $rv, generation = $gen, labels = $labels, annotations = $annotations, spec = $spec
                WHERE kind = $kind AND name = $name
                """, cancellationToken,
                ("$rv", revision), ("$gen", updated.Generation), ("$labels", labels), ("$annotations", annotations),
                ("$spec", write.SpecJson), ("$kind", write.Kind), ("$name", write.Name));
            if (specChanged)
            {
                await RecordRevisionAsync(connection, transaction, updated, cancellationToken);
            }

            return new WriteResult(WriteOutcome.Configured, updated);
        }

        var createRevision = await AppendChangeAsync(connection, transaction, write.Kind, write.Name, ChangeOp.Upserted, cancellationToken);
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
        await ExecuteAsync(connection, transaction, """
            INSERT INTO resources (kind, name, uid, resource_version, generation, created_at, labels, annotations, spec, status)
            VALUES ($kind, $name, $uid, $rv, 1, $created, $labels, $annotations, $spec, NULL)
            """, cancellationToken,
            ("$kind", write.Kind), ("$name", write.Name), ("$uid", created.Uid), ("$rv", createRevision),
            ("$created", created.CreationTimestamp.ToString("O", CultureInfo.InvariantCulture)),
            ("$labels", labels), ("$annotations", annotations), ("$spec", write.SpecJson));
        await RecordRevisionAsync(connection, transaction, created, cancellationToken);
        return new WriteResult(WriteOutcome.Created, created);
    }

    public async Task UpdateStatusAsync(string kind, string name, string statusJson, CancellationToken cancellationToken)
    {
        var rows = await ExecuteLockedAsync("UPDATE resources SET status = $status WHERE kind = $kind AND name = $name", cancellationToken,
            ("$status", statusJson), ("$kind", kind), ("$name", name));
        if (rows == 0)
        {
            throw new StoreException(StoreError.NotFound, kind, name, $"{kind} \"{name}\" not found");
        }
    }

    public async Task SetStatusFieldsAsync(string kind, string name, JsonObject fields, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(fields);
        // json_set(status, '$."field"', json(value), ...): each field replaced whole, the rest of the text kept.
        var parameters = new (string Name, object? Value)[2 + (2 * fields.Count)];
        parameters[0] = ("$kind", kind);
        parameters[1] = ("$name", name);
        var i = 2;
        foreach (var (field, value) in fields)
        {
            parameters[i] = (ParameterName("$p", i), StatusFieldPath(field));
            parameters[i + 1] = (ParameterName("$v", i), value?.ToJsonString() ?? "null");
            i += 2;
        }

        if (await ExecuteLockedAsync(SetStatusFieldsSql(fields.Count), cancellationToken, parameters) == 0)
        {
            throw new StoreException(StoreError.NotFound, kind, name, $"{kind} \"{name}\" not found");
        }
    }

    // The statement for each count of fields, made once: the same text each time, so it stays prepared.
    private static readonly ConcurrentDictionary<int, string> s_setStatusFields = new();

    private static string SetStatusFieldsSql(int fields) => s_setStatusFields.GetOrAdd(fields, static count =>
    {
        var sql = new StringBuilder("UPDATE resources SET status = json_set(COALESCE(status, '{}')");
        for (var i = 2; i < 2 + (2 * count); i += 2)
        {
            sql.Append(CultureInfo.InvariantCulture, $", $p{i}, json($v{i})");
        }

        return sql.Append(") WHERE kind = $kind AND name = $name").ToString();
    });

    private static readonly ConcurrentDictionary<(string Prefix, int Index), string> s_parameterNames = new();

    private static string ParameterName(string prefix, int index) =>
        s_parameterNames.GetOrAdd((prefix, index), static key => key.Prefix + key.Index.ToString(CultureInfo.InvariantCulture));

    /// <summary>The JSON path of a top-level field: quoted, so dots and brackets in it are part of the name.</summary>
    private static string StatusFieldPath(string field) =>
        field.Length > 0 && !field.Contains('"', StringComparison.Ordinal) && !field.Contains('\\', StringComparison.Ordinal)
            ? $"$.\"{field}\""
            : throw new ArgumentException($"status field name '{field}' is empty or holds a quote or backslash", nameof(field));

    public async Task<IReadOnlyList<ResourceChange>> ListChangesAsync(long afterRevision, int limit, CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync(cancellationToken);
        await using var command = Command(connection, null,
            "SELECT revision, kind, name, op FROM changes WHERE revision > $after ORDER BY revision LIMIT $limit",
            ("$after", afterRevision), ("$limit", limit));
        var changes = new List<ResourceChange>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            changes.Add(new ResourceChange(reader.GetInt64(0), reader.GetString(1), reader.GetString(2), (ChangeOp)reader.GetInt32(3)));
        }

        return changes;
    }

    public async Task CompactChangesAsync(long throughRevision, CancellationToken cancellationToken)
    {
        await _writeLock.WaitAsync(cancellationToken);
        try
        {
            await using var connection = await OpenAsync(cancellationToken);
            await using var transaction = connection.BeginTransaction(deferred: false);
            // The newest change is never dropped: it is what the global revision counts from.
            await ExecuteAsync(connection, transaction, "DELETE FROM changes WHERE revision <= $through AND revision < (SELECT MAX(revision) FROM changes)",
                cancellationToken, ("$through", throughRevision));
            await ExecuteAsync(connection, transaction, """
                INSERT INTO store_meta (key, value) VALUES ('compacted', $through)
                ON CONFLICT (key) DO UPDATE SET value = MAX(value, $through)
                """, cancellationToken, ("$through", Math.Min(throughRevision, await RevisionAsync(connection, transaction, cancellationToken) - 1)));
            await transaction.CommitAsync(cancellationToken);
        }
        finally
        {
            ReleaseWriteLock();
        }
    }

    public async Task<long> GetCompactedRevisionAsync(CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync(cancellationToken);
        await using var command = Command(connection, null, "SELECT value FROM store_meta WHERE key = 'compacted'");
        return await command.ExecuteScalarAsync(cancellationToken) is long value ? Math.Max(0, value) : 0;
    }

    public async Task<NodeInventory?> GetNodeInventoryAsync(string node, CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync(cancellationToken);
        await using var command = Command(connection, null, "SELECT revision, resources FROM node_inventory WHERE node = $node", ("$node", node));
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        return await reader.ReadAsync(cancellationToken)
            ? new NodeInventory(reader.GetInt64(0), JsonSerializer.Deserialize(reader.GetString(1), CoreJson.Default.DictionaryStringInt64) ?? [])
            : null;
    }

    public async Task SaveNodeInventoryAsync(string node, NodeInventory inventory, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(inventory);
        await ExecuteLockedAsync("""
            INSERT INTO node_inventory (node, revision, resources) VALUES ($node, $rev, $json)
            ON CONFLICT (node) DO UPDATE SET revision = $rev, resources = $json
            """, cancellationToken, ("$node", node), ("$rev", inventory.Revision), ("$json", JsonSerializer.Serialize(inventory.Resources, CoreJson.Default.IReadOnlyDictionaryStringInt64)));
    }

    public async Task<bool> PutBlobAsync(string digest, ReadOnlyMemory<byte> content, CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync(cancellationToken);
        var rows = await ExecuteAsync(connection, null,
            "INSERT INTO blobs (digest, size, content, created_at) VALUES ($digest, $size, $content, $at) ON CONFLICT (digest) DO NOTHING",
            cancellationToken, ("$digest", digest), ("$size", (long)content.Length), ("$content", content.ToArray()), ("$at", Now()));
        return rows > 0;
    }

    public async Task<long?> GetBlobSizeAsync(string digest, CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync(cancellationToken);
        await using var command = Command(connection, null, "SELECT size FROM blobs WHERE digest = $digest", ("$digest", digest));
        return await command.ExecuteScalarAsync(cancellationToken) is long size ? size : null;
    }

    public async Task<int> ReadBlobAsync(string digest, long offset, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        await using var connection = await OpenAsync(cancellationToken);
        await using var command = Command(connection, null, "SELECT rowid FROM blobs WHERE digest = $digest", ("$digest", digest));
        if (await command.ExecuteScalarAsync(cancellationToken) is not long rowid)
        {
            throw new StoreException(StoreError.NotFound, "Blob", digest, $"blob {digest} not found");
        }

        // Incremental blob I/O reads only the pages of the slice; substr() would load the whole
        // blob for every slice, which made reading a 50 MB layer in 64 KB pieces quadratic.
        await using var blob = new SqliteBlob(connection, "blobs", "content", rowid, readOnly: true);
        if (offset >= blob.Length)
        {
            return 0;
        }

        blob.Position = offset;
        var total = 0;
        while (total < buffer.Length)
        {
            var read = await blob.ReadAsync(buffer[total..], cancellationToken);
            if (read == 0)
            {
                break;
            }

            total += read;
        }

        return total;
    }

    private GroupCommit<RecordIngest>? _ingests;

    /// <summary>The most record batches (of any nodes) one durable transaction takes.</summary>
    private const int IngestBatch = 256;

    /// <summary>
    /// Durable when the task completes. Batches that arrive together, from many nodes, share one
    /// durable commit (<see cref="GroupCommit{T}"/>): an idle fleet's trickle of records costs a
    /// sync of the log per group rather than per batch.
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

    private const string InsertRecordSql = """
        INSERT INTO records (node, sequence, topic, source, payload, created_ms, ingested_ms)
        VALUES ($node, $seq, $topic, $source, $payload, $created, $ingested)
        ON CONFLICT (node, sequence) DO NOTHING
        """;

    private async Task InsertRecordsAsync(IReadOnlyList<RecordIngest> ingests)
    {
        await _writeLock.WaitAsync();
        try
        {
            // On the ingest's own connection, kept open at synchronous = FULL with the insert prepared:
            // a group's commit reaches the disk before any of its nodes is acked.
            var ingestedMs = _time.GetUtcNow().ToUnixTimeMilliseconds();
            await _durable.InTransactionAsync(InsertRecordSql, async insert =>
            {
                foreach (var ingest in ingests)
                {
                    var stored = 0;
                    foreach (var record in ingest.Records)
                    {
                        SqliteWriter.Bind(insert, ("$node", ingest.Node), ("$seq", record.Sequence), ("$topic", record.Topic), ("$source", record.Source),
                            ("$payload", record.Payload), ("$created", record.CreatedAt.ToUnixTimeMilliseconds()), ("$ingested", ingestedMs));
                        stored += await insert.ExecuteNonQueryAsync(CancellationToken.None);
                    }

                    ingest.Stored = stored;
                }
            }, CancellationToken.None);
        }
        finally
        {
            ReleaseWriteLock();
        }
    }

    public async Task<IReadOnlyList<StoredRecord>> ReadRecordsAsync(string topic, long afterCursor, int limit, string? node, CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync(cancellationToken);
        await using var command = Command(connection, null, $"""
            SELECT cursor, node, sequence, topic, source, payload, created_ms, ingested_ms FROM records
            WHERE topic = $topic AND cursor > $after {(node is null ? "" : "AND node = $node")}
            ORDER BY cursor LIMIT $limit
            """, ("$topic", topic), ("$after", afterCursor), ("$limit", limit), ("$node", node));
        var records = new List<StoredRecord>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            records.Add(new StoredRecord(reader.GetInt64(0), reader.GetString(1), reader.GetInt64(2), reader.GetString(3), reader.GetString(4),
                (byte[])reader[5], DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(6)), DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(7))));
        }

        return records;
    }

    public async Task<IReadOnlyList<TopicSummary>> ListTopicsAsync(CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync(cancellationToken);
        await using var command = Command(connection, null, """
            SELECT topic, COUNT(*), SUM(length(payload)), COUNT(DISTINCT node), MAX(ingested_ms) FROM records GROUP BY topic ORDER BY topic
            """);
        var topics = new List<TopicSummary>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            topics.Add(new TopicSummary(reader.GetString(0), reader.GetInt64(1), reader.GetInt64(2), reader.GetInt32(3), DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(4))));
        }

        return topics;
    }

    public async Task CreateTokenAsync(TokenRecord token, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(token);
        try
        {
            await ExecuteLockedAsync("""
                INSERT INTO tokens (id, kind, secret_hash, subject, created_at, expires_at, description, role, max_uses, uses, labels)
                VALUES ($id, $kind, $hash, $subject, $created, $expires, $description, $role, $maxUses, 0, $labels)
                """, cancellationToken,
                ("$id", token.Id), ("$kind", (int)token.Kind), ("$hash", token.SecretHash), ("$subject", token.Subject),
                ("$created", token.CreatedAt.ToString("O", CultureInfo.InvariantCulture)),
                ("$expires", token.ExpiresAt?.ToString("O", CultureInfo.InvariantCulture)), ("$description", token.Description),
                ("$role", token.Role), ("$maxUses", token.MaxUses), ("$labels", Serialize(token.Labels)));
        }
        catch (SqliteException ex) when (ex.SqliteErrorCode == 19)
        {
            throw new StoreException(StoreError.AlreadyExists, "Token", token.Id, $"token {token.Id} already exists");
        }
        finally
        {
            TokensChanged();
        }
    }

    /// <summary>A token by id: cached for a moment once found (every API request asks), dropped at once by any write of tokens.</summary>
    public async Task<TokenRecord?> GetTokenAsync(string id, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(id);
        var epoch = Interlocked.Read(ref _tokenEpoch);
        var now = _time.GetTimestamp();
        if (_tokens.TryGetValue(id, out var cached) && cached.Epoch == epoch && _time.GetElapsedTime(cached.At, now) < TokenCacheFor)
        {
            return cached.Record;
        }

        await using var connection = await OpenAsync(cancellationToken);
        await using var command = Command(connection, null, $"SELECT {TokenColumns} FROM tokens WHERE id = $id", ("$id", id));
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        if (!await reader.ReadAsync(cancellationToken))
        {
            _tokens.TryRemove(id, out _);
            return null; // unknown ids are not cached: guesses would fill the cache
        }

        var record = ReadToken(reader);
        _tokens[id] = (record, epoch, now);
        return record;
    }

    /// <summary>After a write of tokens: every cached read is read again.</summary>
    private void TokensChanged()
    {
        Interlocked.Increment(ref _tokenEpoch);
        _tokens.Clear();
    }

    public async Task<IReadOnlyList<TokenRecord>> ListTokensAsync(CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync(cancellationToken);
        await using var command = Command(connection, null, $"SELECT {TokenColumns} FROM tokens ORDER BY created_at, id");
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        var tokens = new List<TokenRecord>();
        while (await reader.ReadAsync(cancellationToken))
        {
            tokens.Add(ReadToken(reader));
        }

        return tokens;
    }

    /// <summary>An Application's new generation is a revision, kept with the write that made it.</summary>
    private async Task RecordRevisionAsync(SqliteConnection connection, SqliteTransaction transaction, StoredResource resource, CancellationToken cancellationToken)
    {
        if (resource.Kind != ResourceKind.Application.Kind)
        {
            return;
        }

        var digest = resource.Spec()["module"]?["digest"]?.GetValue<string>() ?? "";
        await ExecuteAsync(connection, transaction, """
            INSERT INTO app_revisions (app, revision, digest, spec, created_ms) VALUES ($app, $rev, $digest, $spec, $at)
            ON CONFLICT (app, revision) DO UPDATE SET digest = $digest, spec = $spec, created_ms = $at
            """, cancellationToken,
            ("$app", resource.Name), ("$rev", resource.Generation), ("$digest", digest), ("$spec", resource.SpecJson), ("$at", _time.GetUtcNow().ToUnixTimeMilliseconds()));
    }

    public async Task<IReadOnlyList<AppRevision>> ListAppRevisionsAsync(string app, int limit, CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync(cancellationToken);
        await using var command = Command(connection, null, "SELECT app, revision, digest, spec, created_ms, outcome FROM app_revisions WHERE app = $app ORDER BY revision DESC LIMIT $limit",
            ("$app", app), ("$limit", limit));
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        var revisions = new List<AppRevision>();
        while (await reader.ReadAsync(cancellationToken))
        {
            revisions.Add(ReadRevision(reader));
        }

        return revisions;
    }

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

    /// <summary>A batch in one transaction on the kept writer connection, its insert prepared once (see <see cref="SqliteWriter"/>).</summary>
    private Task InsertAuditsAsync(IReadOnlyList<AuditEntry> entries) => ExecuteEachLockedAsync(entries, """
        INSERT INTO audit (at_ms, actor, role, verb, path, status, detail) VALUES ($at, $actor, $role, $verb, $path, $status, $detail)
        """, static entry => [("$at", entry.At.ToUnixTimeMilliseconds()), ("$actor", entry.Actor), ("$role", entry.Role), ("$verb", entry.Verb),
            ("$path", entry.Path), ("$status", entry.Status), ("$detail", entry.Detail)], CancellationToken.None);

    public async Task AppendEventAsync(EventRecord entry, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(entry);
        await ExecuteLockedAsync("""
            INSERT INTO events (at_ms, kind, name, type, reason, message) VALUES ($at, $kind, $name, $type, $reason, $message)
            """, cancellationToken,
            ("$at", entry.At.ToUnixTimeMilliseconds()), ("$kind", entry.Kind), ("$name", entry.Name), ("$type", entry.Type), ("$reason", entry.Reason), ("$message", entry.Message));
    }

    public async Task<IReadOnlyList<EventRecord>> ListEventsAsync(long afterId, int limit, string? name, CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync(cancellationToken);
        await using var command = Command(connection, null,
            "SELECT id, at_ms, kind, name, type, reason, message FROM events WHERE id > $after AND ($name IS NULL OR name = $name) ORDER BY id LIMIT $limit",
            ("$after", afterId), ("$name", name), ("$limit", limit));
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        var events = new List<EventRecord>();
        while (await reader.ReadAsync(cancellationToken))
        {
            events.Add(new EventRecord(reader.GetInt64(0), DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(1)), reader.GetString(2), reader.GetString(3),
                reader.GetString(4), reader.GetString(5), reader.GetString(6)));
        }

        return events;
    }

    public async Task<IReadOnlyList<AuditEntry>> ListAuditAsync(long afterId, int limit, CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync(cancellationToken);
        await using var command = Command(connection, null, "SELECT id, at_ms, actor, role, verb, path, status, detail FROM audit WHERE id > $after ORDER BY id LIMIT $limit",
            ("$after", afterId), ("$limit", limit));
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        var entries = new List<AuditEntry>();
        while (await reader.ReadAsync(cancellationToken))
        {
            entries.Add(new AuditEntry(reader.GetInt64(0), DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(1)), reader.GetString(2), reader.GetString(3),
                reader.GetString(4), reader.GetString(5), reader.GetInt32(6), reader.IsDBNull(7) ? null : reader.GetString(7)));
        }

        return entries;
    }

    public async Task RecordNodeCertificateAsync(string node, string serial, DateTimeOffset notAfter, CancellationToken cancellationToken)
    {
        await ExecuteLockedAsync("INSERT INTO node_certificates (serial, node, not_after_ms) VALUES ($serial, $node, $notAfter)", cancellationToken,
            ("$serial", serial), ("$node", node), ("$notAfter", notAfter.ToUnixTimeMilliseconds()));
    }

    public async Task<bool> IsNodeCertificateCurrentAsync(string node, string serial, CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync(cancellationToken);
        await using var command = Command(connection, null, "SELECT COUNT(*) FROM node_certificates WHERE serial = $serial AND node = $node", ("$serial", serial), ("$node", node));
        return (long)(await command.ExecuteScalarAsync(cancellationToken))! > 0;
    }

    public async Task<bool> TryUseTokenAsync(string id, CancellationToken cancellationToken)
    {
        try
        {
            return await ExecuteLockedAsync("UPDATE tokens SET uses = uses + 1 WHERE id = $id AND (max_uses IS NULL OR uses < max_uses)",
                cancellationToken, ("$id", id)) == 1;
        }
        finally
        {
            TokensChanged();
        }
    }

    /// <summary>Data dirs from before token limits and roles: add the columns (old API tokens are admin).</summary>
    private static async Task MigrateTokensAsync(SqliteConnection connection, CancellationToken cancellationToken)
    {
        var columns = new HashSet<string>(StringComparer.Ordinal);
        await using (var info = Command(connection, null, "PRAGMA table_info(tokens)"))
        await using (var reader = await info.ExecuteReaderAsync(cancellationToken))
        {
            while (await reader.ReadAsync(cancellationToken))
            {
                columns.Add(reader.GetString(1));
            }
        }

        foreach (var (column, type) in new[] { ("role", "TEXT NULL"), ("max_uses", "INTEGER NULL"), ("uses", "INTEGER NOT NULL DEFAULT 0"), ("labels", "TEXT NOT NULL DEFAULT '{}'") })
        {
            if (!columns.Contains(column))
            {
                await ExecuteAsync(connection, null, $"ALTER TABLE tokens ADD COLUMN {column} {type}", cancellationToken);
            }
        }
    }

    public async Task<bool> DeleteTokenAsync(string id, CancellationToken cancellationToken)
    {
        try
        {
            return await ExecuteLockedAsync("DELETE FROM tokens WHERE id = $id", cancellationToken, ("$id", id)) > 0;
        }
        finally
        {
            TokensChanged();
        }
    }

    public async ValueTask DisposeAsync()
    {
        // Entries already queued for the audit log are written (or failed) before the lock goes.
        if (_audits is { } audits)
        {
            await audits.Drained;
        }

        if (_ingests is { } ingests)
        {
            await ingests.Drained;
        }

        // The writer's connection is closed by whoever holds the lock last: the write running now
        // finishes on it, the ones still waiting fail with the gate.
        try
        {
            await _writeLock.WaitUrgentAsync();
        }
        catch (ObjectDisposedException)
        {
            return; // disposed before
        }

        await _writer.DisposeAsync();
        await _durable.DisposeAsync();
        _writeLock.Dispose();
        SqliteConnection.ClearAllPools();
    }

    private const string Columns = "kind, name, uid, resource_version, generation, created_at, labels, annotations, spec, status";
    private const string TokenColumns = "id, kind, secret_hash, subject, created_at, expires_at, description, role, max_uses, uses, labels";

    /// <summary>A write transaction whose commit syncs the WAL to disk: what the server acks must survive a crash.</summary>
    private static async Task<SqliteTransaction> BeginDurableAsync(SqliteConnection connection, CancellationToken cancellationToken)
    {
        s_normal.GetValue(connection.Handle!, static _ => new StrongBox<bool>()).Value = false; // the next open sets NORMAL again
        await using (var full = Command(connection, null, "PRAGMA synchronous = FULL"))
        {
            await full.ExecuteNonQueryAsync(cancellationToken);
        }

        return connection.BeginTransaction(deferred: false);
    }

    /// <summary>
    /// Whether a physical connection (a pooled one keeps its handle) runs with the busy timeout
    /// set and at synchronous = NORMAL: set once when it is first opened, and again only after a
    /// durable write left it at FULL. Running both pragmas at every open was SQLite parsing two
    /// statements for each store call, a tenth of an idle 2,000-node server's store work (perf).
    /// </summary>
    private static readonly ConditionalWeakTable<object, StrongBox<bool>> s_normal = new();

    /// <summary>A connection whose every commit syncs the WAL to disk, kept so by whoever holds it.</summary>
    private async Task<SqliteConnection> OpenDurableAsync(CancellationToken cancellationToken)
    {
        var connection = await OpenAsync(cancellationToken);
        s_normal.GetValue(connection.Handle!, static _ => new StrongBox<bool>()).Value = false; // when it goes back to the pool, the next open sets NORMAL again
        await using var full = Command(connection, null, "PRAGMA synchronous = FULL");
        await full.ExecuteNonQueryAsync(cancellationToken);
        return connection;
    }

    private async Task<SqliteConnection> OpenAsync(CancellationToken cancellationToken)
    {
        var connection = new SqliteConnection(_connectionString);
        await connection.OpenAsync(cancellationToken);
        var normal = s_normal.GetValue(connection.Handle!, static _ => new StrongBox<bool>());
        if (!normal.Value)
        {
            await using var pragma = Command(connection, null, "PRAGMA busy_timeout = 30000; PRAGMA synchronous = NORMAL;");
            await pragma.ExecuteNonQueryAsync(cancellationToken);
            normal.Value = true;
        }

        return connection;
    }

    private static async Task<StoredResource?> GetAsync(SqliteConnection connection, SqliteTransaction? transaction, string kind, string name, CancellationToken cancellationToken)
    {
        await using var command = Command(connection, transaction, $"SELECT {Columns} FROM resources WHERE kind = $kind AND name = $name",
            ("$kind", kind), ("$name", name));
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        return await reader.ReadAsync(cancellationToken) ? Read(reader) : null;
    }

    private static async Task<long> RevisionAsync(SqliteConnection connection, SqliteTransaction? transaction, CancellationToken cancellationToken)
    {
        await using var command = Command(connection, transaction, "SELECT COALESCE(MAX(revision), 0) FROM changes");
        return (long)(await command.ExecuteScalarAsync(cancellationToken))!;
    }

    /// <summary>
    /// Releases the write lock; when the writes under it appended a change (committed or not),
    /// the cached revision is read again from then on.
    /// </summary>
    private void ReleaseWriteLock()
    {
        if (_appendedChange)
        {
            _appendedChange = false;
            _appendedRevision = 0;
            Interlocked.Increment(ref _revisionEpoch);
        }

        _writeLock.Release();
    }

    // Set under the write lock by AppendChangeAsync, cleared as the lock is released: whether the
    // writes under it appended a change, and the last revision they took.
    private bool _appendedChange;
    private long _appendedRevision;

    /// <summary>Called under the write lock once the transaction that appended changes has committed.</summary>
    private void PublishAppended()
    {
        if (_appendedRevision > 0)
        {
            Changes.Publish(_appendedRevision);
        }
    }

    private async Task<long> AppendChangeAsync(SqliteConnection connection, SqliteTransaction transaction, string kind, string name, ChangeOp op, CancellationToken cancellationToken)
    {
        _appendedChange = true;
        await using var command = Command(connection, transaction,
            "INSERT INTO changes (kind, name, op, at) VALUES ($kind, $name, $op, $at) RETURNING revision",
            ("$kind", kind), ("$name", name), ("$op", (int)op), ("$at", Now()));
        _appendedRevision = (long)(await command.ExecuteScalarAsync(cancellationToken))!;
        return _appendedRevision;
    }

    private static StoredResource Read(SqliteDataReader reader) => new()
    {
        Kind = reader.GetString(0),
        Name = reader.GetString(1),
        Uid = reader.GetString(2),
        ResourceVersion = reader.GetInt64(3),
        Generation = reader.GetInt64(4),
        CreationTimestamp = DateTimeOffset.Parse(reader.GetString(5), CultureInfo.InvariantCulture),
        Labels = Deserialize(reader.GetString(6)),
        Annotations = Deserialize(reader.GetString(7)),
        SpecJson = reader.GetString(8),
        StatusJson = reader.IsDBNull(9) ? null : reader.GetString(9),
    };

    private static TokenRecord ReadToken(SqliteDataReader reader) => new()
    {
        Id = reader.GetString(0),
        Kind = (TokenKind)reader.GetInt32(1),
        SecretHash = reader.GetString(2),
        Subject = reader.IsDBNull(3) ? null : reader.GetString(3),
        CreatedAt = DateTimeOffset.Parse(reader.GetString(4), CultureInfo.InvariantCulture),
        ExpiresAt = reader.IsDBNull(5) ? null : DateTimeOffset.Parse(reader.GetString(5), CultureInfo.InvariantCulture),
        Description = reader.IsDBNull(6) ? null : reader.GetString(6),
        Role = reader.IsDBNull(7) ? ((TokenKind)reader.GetInt32(1) == TokenKind.Api ? Roles.Admin : null) : reader.GetString(7),
        MaxUses = reader.IsDBNull(8) ? null : reader.GetInt32(8),
        Uses = reader.GetInt32(9),
        Labels = Deserialize(reader.GetString(10)),
    };

    private static SqliteCommand Command(SqliteConnection connection, SqliteTransaction? transaction, string sql, params (string Name, object? Value)[] parameters)
    {
        var command = connection.CreateCommand();
        command.Transaction = transaction;
        command.CommandText = sql;
        foreach (var (name, value) in parameters)
        {
            command.Parameters.AddWithValue(name, value ?? DBNull.Value);
        }

        return command;
    }

    private static async Task<int> ExecuteAsync(SqliteConnection connection, SqliteTransaction? transaction, string sql, CancellationToken cancellationToken, params (string Name, object? Value)[] parameters)
    {
        await using var command = Command(connection, transaction, sql, parameters);
        return await command.ExecuteNonQueryAsync(cancellationToken);
    }

    private static StoreException NotFound(ResourceWrite write) =>
        new(StoreError.NotFound, write.Kind, write.Name, $"{write.Kind} \"{write.Name}\" not found");

    private string Now() => _time.GetUtcNow().ToString("O", CultureInfo.InvariantCulture);

    private static DateTimeOffset TruncateToSeconds(DateTimeOffset value) => new(value.Ticks - (value.Ticks % TimeSpan.TicksPerSecond), value.Offset);

    private static string Serialize(IReadOnlyDictionary<string, string> map) =>
        JsonSerializer.Serialize(new SortedDictionary<string, string>(map.ToDictionary(), StringComparer.Ordinal), CoreJson.Default.SortedDictionaryStringString);

    private static Dictionary<string, string> Deserialize(string json) =>
        JsonSerializer.Deserialize(json, CoreJson.Default.DictionaryStringString) ?? [];

    private static Dictionary<string, string> Copy(IReadOnlyDictionary<string, string> map) => new(map, StringComparer.Ordinal);
}
