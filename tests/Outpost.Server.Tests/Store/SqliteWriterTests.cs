using Microsoft.Data.Sqlite;
using Outpost.Server.Store;

namespace Outpost.Server.Tests.Store;

/// <summary>
/// The store's one-statement writes on one kept connection: statements run again with new values,
/// a refused write leaves the connection in use, any other failure drops it for a new one.
/// </summary>
public sealed class SqliteWriterTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("outpost-writer-").FullName;
    private int _opened;

    public void Dispose()
    {
        SqliteConnection.ClearAllPools();
        Directory.Delete(_dir, recursive: true);
    }

    private async Task<SqliteConnection> OpenAsync(CancellationToken ct)
    {
        Interlocked.Increment(ref _opened);
        var connection = new SqliteConnection($"Data Source={Path.Combine(_dir, "w.db")}");
        await connection.OpenAsync(ct);
        return connection;
    }

    private async Task<List<long>> IdsAsync()
    {
        await using var connection = await OpenAsync(CancellationToken.None);
        await using var command = connection.CreateCommand();
        command.CommandText = "SELECT id FROM t ORDER BY id";
        await using var reader = await command.ExecuteReaderAsync();
        var ids = new List<long>();
        while (await reader.ReadAsync())
        {
            ids.Add(reader.GetInt64(0));
        }

        return ids;
    }

    [Fact]
    public async Task AStatement_RunsAgainWithNewValues_ARefusedWriteKeepsTheConnection_AnyOtherFailureReplacesIt()
    {
        var ct = CancellationToken.None;
        await using var writer = new SqliteWriter(OpenAsync);
        const string Insert = "INSERT INTO t (id, note) VALUES ($id, $note)";
        Assert.Equal(0, await writer.ExecuteAsync("CREATE TABLE t (id INTEGER PRIMARY KEY, note TEXT NULL)", [], ct));
        Assert.Equal(1, await writer.ExecuteAsync(Insert, [("$id", 1L), ("$note", "one")], ct));
        Assert.Equal(1, await writer.ExecuteAsync(Insert, [("$id", 2L), ("$note", null)], ct));
        Assert.Equal(1, _opened);

        // The same text with its values in another order still binds each to its name (a value in
        // the wrong place would match no row).
        const string Update = "UPDATE t SET note = $n WHERE id = $i";
        Assert.Equal(1, await writer.ExecuteAsync(Update, [("$n", "two"), ("$i", 2L)], ct));
        Assert.Equal(1, await writer.ExecuteAsync(Update, [("$i", 1L), ("$n", "uno")], ct));

        // A constraint refuses a write: nothing stored, the connection stays.
        var refused = await Assert.ThrowsAsync<SqliteException>(() => writer.ExecuteAsync(Insert, [("$id", 1L), ("$note", "again")], ct));
        Assert.Equal(19, refused.SqliteErrorCode);
        Assert.Equal(1, await writer.ExecuteAsync(Insert, [("$id", 3L), ("$note", "three")], ct));
        Assert.Equal(1, _opened);

        // Any other failure: the next write opens a new connection, and works.
        await Assert.ThrowsAsync<SqliteException>(() => writer.ExecuteAsync("INSERT INTO missing VALUES (1)", [], ct));
        Assert.Equal(1, await writer.ExecuteAsync(Insert, [("$id", 4L), ("$note", "four")], ct));
        Assert.Equal(2, _opened);

        // Several rows in one transaction: all of them, or none when one is refused.
        await writer.ExecuteEachAsync([5L, 6L], Insert, id => [("$id", id), ("$note", "each")], ct);
        await Assert.ThrowsAsync<SqliteException>(() => writer.ExecuteEachAsync([7L, 1L], Insert, id => [("$id", id), ("$note", "each")], ct));
        Assert.Equal([1L, 2L, 3L, 4L, 5L, 6L], await IdsAsync());
        Assert.Equal(1, await writer.ExecuteAsync(Insert, [("$id", 8L), ("$note", "after")], ct));

        // A transaction whose work fails midway, not in SQLite: the rows it wrote are undone, and the
        // next transaction on the writer commits as usual.
        var opened = _opened;
        await Assert.ThrowsAsync<InvalidOperationException>(() => writer.InTransactionAsync(Insert, async command =>
        {
            SqliteWriter.Bind(command, ("$id", 9L), ("$note", "undone"));
            await command.ExecuteNonQueryAsync(ct);
            throw new InvalidOperationException("the work failed after one row");
        }, ct));
        await writer.ExecuteEachAsync([10L, 11L], Insert, id => [("$id", id), ("$note", "each")], ct);
        Assert.Equal([1L, 2L, 3L, 4L, 5L, 6L, 8L, 10L, 11L], await IdsAsync());
        Assert.Equal(opened + 2, _opened); // the check's own, and a new one for the writer: a failure not SQLite's drops its connection
    }
}
