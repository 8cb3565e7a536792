using System.Net;
using System.Net.Sockets;
using Npgsql;
using Outpost.Core.Store;
using Outpost.Server.Store;

namespace Outpost.Server.Tests.Store;

/// <summary>
/// The conformance suite on PostgreSQL, each test on a fresh database, and what only a shared
/// database has to get right: replicas writing at once, replicas starting at once, schema versions.
/// </summary>
[Collection(PostgresTests.Name)]
public sealed class PostgresControlPlaneStoreTests(PostgresServer server) : ControlPlaneStoreConformanceTests, IDisposable
{
    private readonly List<string> _databases = [];

    protected override async Task<IControlPlaneStore> CreateStoreAsync() => new PostgresControlPlaneStore(await NewDatabaseAsync(), Time);

    protected override IControlPlaneStore CreateSecondStore() => new PostgresControlPlaneStore(_databases[0], Time);

    private async Task<string> NewDatabaseAsync()
    {
        var database = await server.CreateDatabaseAsync();
        _databases.Add(database);
        return database;
    }

    public void Dispose()
    {
        foreach (var database in _databases)
        {
            server.DropDatabase(database);
        }
    }

    private static ResourceWrite App(string name) => new()
    {
        Op = WriteOp.Upsert,
        Kind = "Application",
        Name = name,
        SpecJson = """{"module":{"digest":"sha256:00"}}""",
    };

    /// <summary>
    /// Follows a cursor-read log as a sync session or `logs -f` does, while <paramref name="writers"/>
    /// run, then once more after they are done: every id it was handed, in the order handed.
    /// </summary>
    private static async Task<List<long>> FollowAsync(Task writers, Func<long, Task<(IEnumerable<long> Ids, long Next)>> page)
    {
        var seen = new List<long>();
        var cursor = 0L;
        while (true)
        {
            var finished = writers.IsCompleted; // looked at before the read: the read after it sees every write
            var (ids, next) = await page(cursor);
            var before = seen.Count;
            seen.AddRange(ids);
            cursor = next;
            if (finished && seen.Count == before)
            {
                break;
            }
        }

        await writers; // a writer's failure fails the test here
        return seen;
    }

    private async Task<(PostgresControlPlaneStore A, PostgresControlPlaneStore B, PostgresControlPlaneStore Reader)> ReplicasAsync()
    {
        var database = await NewDatabaseAsync();
        var replicas = (new PostgresControlPlaneStore(database, Time), new PostgresControlPlaneStore(database, Time), new PostgresControlPlaneStore(database, Time));
        await replicas.Item1.InitializeAsync(CancellationToken.None);
        await replicas.Item2.InitializeAsync(CancellationToken.None);
        await replicas.Item3.InitializeAsync(CancellationToken.None);
        return replicas;
    }

    [Fact]
    public async Task TwoReplicas_WritingAtOnce_TakeDistinctRevisions_AndAFollowerSeesEachOnceInOrder()
    {
        var ct = CancellationToken.None;
        var (a, b, reader) = await ReplicasAsync();
        await using var _ = a;
        await using var __ = b;
        await using var ___ = reader;
        const int Loops = 4, WritesPerLoop = 30;

        // Four loops per replica of one small write after another: the transactions interleave and
        // some commit out of the order they started in.
        var loops = new[] { a, b }.SelectMany((store, replica) => Enumerable.Range(0, Loops).Select(loop => Task.Run(async () =>
        {
            var revisions = new List<long>();
            for (var i = 0; i < WritesPerLoop; i++)
            {
                revisions.Add((await store.WriteAsync([App($"r{replica}-{loop}-{i}")], ct))[0].Resource.ResourceVersion);
            }

            return revisions;
        }))).ToList();
        var writers = Task.WhenAll(loops);

        var seen = await FollowAsync(writers, async after =>
        {
            var changes = await reader.ListChangesAsync(after, 7, ct);
            return (changes.Select(c => c.Revision), changes.Count > 0 ? changes[^1].Revision : after);
        });

        const int Total = 2 * Loops * WritesPerLoop;
        Assert.Equal(Enumerable.Range(1, Total).Select(i => (long)i), seen); // each once, in order, none stepped over
        Assert.Equal(seen, (await writers).SelectMany(r => r).Order());
        Assert.Equal(Total, await reader.GetRevisionAsync(ct));
    }

    [Fact]
    public async Task TwoReplicas_IngestingAtOnce_AFollowerOfRecordsLogsAndEventsSeesEachOnce()
    {
        var ct = CancellationToken.None;
        var (a, b, reader) = await ReplicasAsync();
        await using var _ = a;
        await using var __ = b;
        await using var ___ = reader;
        const int Batches = 25, PerBatch = 4;
        var at = Time.GetUtcNow();

        var writers = Task.WhenAll(new[] { a, b }.Select((store, replica) => Task.Run(async () =>
        {
            var node = $"edge-{replica}";
            for (var batch = 0; batch < Batches; batch++)
            {
                var sequences = Enumerable.Range(batch * PerBatch, PerBatch).Select(s => (long)s).ToList();
                await Task.WhenAll(
                    store.IngestAsync(node, [.. sequences.Select(s => new IngestRecord(s, "t", "app", [1, 2, 3], at))], ct),
                    store.IngestLogsAsync([.. sequences.Select(s => new LogRecord(0, node, "s", s, at, "info", "hello", 1, $"{node} {s}"))], ct),
                    store.AppendEventAsync(new EventRecord(0, at, "Node", node, "Normal", "Tick", $"{batch}"), ct));
            }
        })));
        var records = FollowAsync(writers, async after =>
        {
            var page = await reader.ReadRecordsAsync("t", after, 5, null, ct);
            return (page.Select(r => r.Cursor), page.Count > 0 ? page[^1].Cursor : after);
        });
        var logs = FollowAsync(writers, async after =>
        {
            var (lines, cursor) = await reader.ListLogsAsync(new LogQuery(AfterId: after, Limit: 5), ct);
            return (lines.Select(l => l.Id), cursor);
        });
        var events = FollowAsync(writers, async after =>
        {
            var page = await reader.ListEventsAsync(after, 5, null, ct);
            return (page.Select(e => e.Id), page.Count > 0 ? page[^1].Id : after);
        });

        // Ids may have gaps (a sequence is not transactional), but a follower gets every row once, in id order.
        foreach (var (followed, expected) in new[] { (await records, 2 * Batches * PerBatch), (await logs, 2 * Batches * PerBatch), (await events, 2 * Batches) })
        {
            Assert.Equal(expected, followed.Count);
            Assert.Equal(followed.Order(), followed);
            Assert.Equal(followed.Count, followed.Distinct().Count());
        }
    }

    [Fact]
    public async Task Initialize_TwiceAtOnceOnAFreshDatabase_CreatesTheSchemaOnce()
    {
        var ct = CancellationToken.None;
        var database = await NewDatabaseAsync();
        var stores = Enumerable.Range(0, 3).Select(_ => new PostgresControlPlaneStore(database, Time)).ToList();
        try
        {
            await Task.WhenAll(stores.Select(s => s.InitializeAsync(ct)));

            await stores[0].WriteAsync([App("a")], ct);
            Assert.Equal(1, await stores[1].GetRevisionAsync(ct));
            Assert.Equal(PostgresControlPlaneStore.SchemaVersion, await ScalarAsync<int>(database, "SELECT version FROM schema_version"));
            Assert.Equal(1L, await ScalarAsync<long>(database, "SELECT COUNT(*) FROM schema_version"));
        }
        finally
        {
            foreach (var store in stores)
            {
                await store.DisposeAsync();
            }
        }
    }

    [Fact]
    public async Task Initialize_Again_KeepsDataAndRevision()
    {
        var ct = CancellationToken.None;
        var database = await NewDatabaseAsync();
        await using (var first = new PostgresControlPlaneStore(database, Time))
        {
            await first.InitializeAsync(ct);
            await first.WriteAsync([App("a")], ct);
        }

        await using var second = new PostgresControlPlaneStore(database, Time);
        await second.InitializeAsync(ct);
        Assert.Equal(1, await second.GetRevisionAsync(ct));
        Assert.NotNull(await second.GetAsync("Application", "a", ct));
    }

    [Fact]
    public async Task Initialize_OnAVersion1Database_MigratesItUp_KeepingItsData()
    {
        var ct = CancellationToken.None;
        var database = await NewDatabaseAsync();
        await using (var current = new PostgresControlPlaneStore(database, Time))
        {
            await current.InitializeAsync(ct);
            await current.WriteAsync([App("a")], ct);
        }

        // What a server of schema version 1 left: none of the tables of later versions.
        await ExecuteSqlAsync(database, "DROP TABLE leases; DROP TABLE bootstrap; DROP TABLE node_presence; DROP TABLE traffic_samples; DROP TABLE image_tags; UPDATE schema_version SET version = 1");

        await using var upgraded = new PostgresControlPlaneStore(database, Time);
        await upgraded.InitializeAsync(ct);
        Assert.Equal(PostgresControlPlaneStore.SchemaVersion, await ScalarAsync<int>(database, "SELECT version FROM schema_version"));
        Assert.NotNull(await upgraded.GetAsync("Application", "a", ct));
        Assert.Equal(1, (await upgraded.AcquireLeaseAsync("controllers", "replica-a", TimeSpan.FromSeconds(10), ct)).Epoch);
        Assert.Empty(await upgraded.ListPresenceAsync(ct));
        Assert.Empty(await upgraded.ListImageTagsAsync(null, ct));
    }

    [Fact]
    public async Task Initialize_OnADatabaseOfANewerSchema_IsRefusedInWords_AndChangesNothing()
    {
        var ct = CancellationToken.None;
        var database = await NewDatabaseAsync();
        await using (var current = new PostgresControlPlaneStore(database, Time))
        {
            await current.InitializeAsync(ct);
            await current.WriteAsync([App("a")], ct);
        }

        var newer = PostgresControlPlaneStore.SchemaVersion + 1;
        // What a newer server's migration left: its version, and a table this code does not know.
        await ExecuteSqlAsync(database, $"UPDATE schema_version SET version = {newer}; CREATE TABLE from_the_future (id integer)");
        var before = await SchemaAsync(database);

        await using var older = new PostgresControlPlaneStore(database, Time);
        var refused = await Assert.ThrowsAsync<InvalidOperationException>(() => older.InitializeAsync(ct));

        Assert.Equal($"the database schema is version {newer}; this server knows versions up to {PostgresControlPlaneStore.SchemaVersion}: run a newer outpost server",
            refused.Message);
        Assert.Equal(before, await SchemaAsync(database));
        Assert.Equal(newer, await ScalarAsync<int>(database, "SELECT version FROM schema_version"));
        Assert.Equal(1L, await ScalarAsync<long>(database, "SELECT COALESCE(MAX(revision), 0) FROM changes"));
    }

    [Theory]
    [InlineData("postgres://outpost:s%40cr%3Aet@db.example:6543/control?sslmode=require", "db.example", 6543, "control", "outpost", "s@cr:et", SslMode.Require)]
    [InlineData("postgresql://outpost@db.example/control", "db.example", 5432, "control", "outpost", null, SslMode.Prefer)]
    [InlineData("postgresql://outpost@/control?host=/run/postgresql", "/run/postgresql", 5432, "control", "outpost", null, SslMode.Prefer)]
    [InlineData("postgres:///control?host=%2Frun%2Fpostgresql&port=5433&user=outpost&sslmode=disable", "/run/postgresql", 5433, "control", "outpost", null, SslMode.Disable)]
    [InlineData("POSTGRES://outpost:pw@[::1]:5434/control?sslmode=verify-full", "::1", 5434, "control", "outpost", "pw", SslMode.VerifyFull)]
    [InlineData("Host=db.example;Port=5435;Database=control;Username=outpost;Password=pw", "db.example", 5435, "control", "outpost", "pw", SslMode.Prefer)]
    public void ConnectionStringFrom_ReadsUrlsAndConnectionStrings(string datastore, string host, int port, string database, string user, string? password, SslMode sslMode)
    {
        var parsed = new NpgsqlConnectionStringBuilder(PostgresControlPlaneStore.ConnectionStringFrom(datastore));

        Assert.Equal((host, port, database, user, password, sslMode), (parsed.Host, parsed.Port, parsed.Database, parsed.Username, parsed.Password, parsed.SslMode));
    }

    [Theory]
    [InlineData("postgres://outpost:hunter2@db.example:54x/control", "the port \"54x\"")]
    [InlineData("postgres://outpost:hunter2@db.example:70000/control", "the port \"70000\"")]
    [InlineData("postgres://outpost:hunter2@db.example/control?sslmode=sometimes", "sslmode \"sometimes\"")]
    [InlineData("postgres://outpost:hunter2@db.example/control?colour=blue", "parameter \"colour\" is not supported")]
    [InlineData("postgres://outpost:hunter2@db.example/control?sslmode", "parameter \"sslmode\" has no value")]
    [InlineData("postgres://outpost:hunter2@/control", "names no host")]
    [InlineData("postgres://outpost:hunter2@::1/control", "IPv6 address goes in brackets")]
    [InlineData("mysql://outpost:hunter2@db.example/control", "\"mysql://\" is not PostgreSQL's")]
    [InlineData("db.example", "neither a postgres:// URL nor a key=value connection string")]
    [InlineData("Host=db.example;Colour=blue;Password=hunter2", "connection string is not valid")]
    public void ConnectionStringFrom_Malformed_SaysWhatIsWrong_WithoutThePassword(string datastore, string problem)
    {
        var ex = Assert.Throws<ArgumentException>(() => PostgresControlPlaneStore.ConnectionStringFrom(datastore));

        Assert.Contains(problem, ex.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("hunter2", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Initialize_WhereNothingListens_FailsNamingHostAndPort()
    {
        int port;
        using (var listener = new TcpListener(IPAddress.Loopback, 0))
        {
            listener.Start();
            port = ((IPEndPoint)listener.LocalEndpoint).Port;
        }

        await using var store = new PostgresControlPlaneStore($"postgres://outpost@127.0.0.1:{port}/control?connect_timeout=10", Time);

        var ex = await Assert.ThrowsAsync<InvalidOperationException>(() => store.InitializeAsync(CancellationToken.None));
        Assert.Contains($"PostgreSQL at 127.0.0.1:{port}", ex.Message, StringComparison.Ordinal);
    }

    /// <summary>Two replicas whose listeners never poll: what they hear of each other, they heard by notification.</summary>
    private async Task<(PostgresControlPlaneStore A, PostgresControlPlaneStore B, string Database)> DeafToPollingAsync()
    {
        var database = await NewDatabaseAsync();
        var a = new PostgresControlPlaneStore(database, Time) { PollEvery = TimeSpan.FromHours(1) };
        var b = new PostgresControlPlaneStore(database, Time) { PollEvery = TimeSpan.FromHours(1) };
        await a.InitializeAsync(CancellationToken.None);
        await b.InitializeAsync(CancellationToken.None);
        return (a, b, database);
    }

    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task AReplica_HearsAnothersCommits_ByNotification_ResourcesAndBuckets()
    {
        var ct = CancellationToken.None;
        var (a, b, _) = await DeafToPollingAsync();
        await using var _a = a;
        await using var _b = b;

        var revision = (await a.WriteAsync([App("x"), App("y")], ct))[^1].Resource.ResourceVersion;
        Assert.Equal(revision, await b.Changes.WaitAfterAsync(0, ct).WaitAsync(Patience));

        await a.MergeBucketAsync("settings", "", Outpost.Core.Sync.ConflictPolicy.Lww,
            [new Outpost.Core.Sync.BucketWrite("mode", new Outpost.Core.Sync.VersionedValue([1], new Outpost.Core.Sync.HlcTimestamp(100, 0, "cloud")), null)], ct);
        Assert.Equal(1, await b.BucketChanges.WaitAfterAsync(0, ct).WaitAsync(Patience));

        var rollout = await b.SaveRolloutAsync("x", new Outpost.Core.Rollouts.RolloutState { Revision = 1, StartedAt = Time.GetUtcNow(), Moved = ["edge-1"] }, movesNodes: true, null, ct);
        Assert.Equal(rollout, await a.Changes.WaitAfterAsync(revision, ct).WaitAsync(Patience));
    }

    [Fact]
    public async Task AReplica_WhoseListeningConnectionIsCut_ConnectsAgain_AndCatchesUpOnWhatItMissed()
    {
        var ct = CancellationToken.None;
        var (a, b, database) = await DeafToPollingAsync();
        await using var _a = a;
        await using var _b = b;
        await a.WriteAsync([App("x")], ct);
        await b.Changes.WaitAfterAsync(0, ct).WaitAsync(Patience);

        // As a PostgreSQL restart or a cut link would: every listener's session ends; then a write
        // whose notification may go to nobody.
        var cut = await ScalarAsync<long>(database, $"SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = '{PostgresControlPlaneStore.ListenerName}' AND datname = current_database()");
        Assert.Equal(2, cut);
        var revision = (await a.WriteAsync([App("y")], ct))[0].Resource.ResourceVersion;

        Assert.Equal(revision, await b.Changes.WaitAfterAsync(revision - 1, ct).WaitAsync(Patience));
        Assert.True(b.FollowReconnects >= 1);

        // And it listens again: the next write is heard without a poll.
        var next = (await a.WriteAsync([App("z")], ct))[0].Resource.ResourceVersion;
        Assert.Equal(next, await b.Changes.WaitAfterAsync(revision, ct).WaitAsync(Patience));
    }

    private static async Task ExecuteSqlAsync(string database, string sql)
    {
        await using var source = NpgsqlDataSource.Create(database);
        await using var command = source.CreateCommand(sql);
        await command.ExecuteNonQueryAsync();
    }

    private static async Task<T> ScalarAsync<T>(string database, string sql)
    {
        await using var source = NpgsqlDataSource.Create(database);
        await using var command = source.CreateCommand(sql);
        return (T)(await command.ExecuteScalarAsync())!;
    }

    /// <summary>Every table and column of the public schema, as one string to compare.</summary>
    private static Task<string> SchemaAsync(string database) => ScalarAsync<string>(database, """
        SELECT string_agg(table_name || '.' || column_name || ':' || data_type, ',' ORDER BY table_name, ordinal_position)
        FROM information_schema.columns WHERE table_schema = 'public'
        """);
}
