using Microsoft.Data.Sqlite;

namespace Outpost.Server.Store;

/// <summary>
/// The SQLite store's one-statement writes, on one connection kept open and with each statement
/// prepared once: used only by whoever holds the store's write lock, so never by two at once.
/// </summary>
/// <remarks>
/// A connection and a command per write cost, besides SQLite parsing the statement again, four
/// finalizable objects (the connection, the command, the weak reference the connection keeps to
/// it, the statement's handle). Each ack of a change sent to every node was two such writes, and
/// the weak references outlive a young collection: at 3,000 nodes they were most of what the
/// server allocated on the slow path during a fan-out (a probe on the runtime's allocator).
/// Transactions that must reach the disk (records, logs, resources) keep their own connections:
/// they switch the connection to <c>synchronous = FULL</c>, and these writes run at NORMAL.
/// </remarks>
internal sealed class SqliteWriter(Func<CancellationToken, Task<SqliteConnection>> open) : IAsyncDisposable
{
    /// <summary>Statements kept prepared at most: the store's are a few dozen constant texts.</summary>
    private const int MostPrepared = 128;

    private readonly Dictionary<string, SqliteCommand> _prepared = new(StringComparer.Ordinal);
    private SqliteConnection? _connection;

    /// <summary>Runs one statement on its own (SQLite commits it at once); the rows it changed.</summary>
    public async Task<int> ExecuteAsync(string sql, (string Name, object? Value)[] parameters, CancellationToken cancellationToken)
    {
        try
        {
            var command = await CommandAsync(sql, cancellationToken);
            Bind(command, null, parameters);
            return await command.ExecuteNonQueryAsync(cancellationToken);
        }
        catch (Exception ex) when (!LeavesConnectionSound(ex))
        {
            await ResetAsync();
            throw;
        }
    }

    /// <summary>Runs <paramref name="sql"/> once per item in one IMMEDIATE transaction: all or nothing.</summary>
    public async Task ExecuteEachAsync<T>(IReadOnlyCollection<T> items, string sql, Func<T, (string Name, object? Value)[]> parameters, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        await InTransactionAsync(sql, async command =>
        {
            foreach (var item in items)
            {
                Bind(command, null, parameters(item));
                await command.ExecuteNonQueryAsync(cancellationToken);
            }
        }, cancellationToken);
    }

    /// <summary>
    /// Runs <paramref name="work"/> with <paramref name="sql"/> prepared, in one IMMEDIATE
    /// transaction committed when it returns: all or nothing.
    /// </summary>
    /// <remarks>
    /// BEGIN, COMMIT and ROLLBACK are statements kept prepared like the others, not a
    /// <see cref="SqliteTransaction"/>: each of those ran its BEGIN and COMMIT as new commands and
    /// registered a rollback hook, a dozen finalizable objects per transaction (at one audited
    /// request through the proxy at a time, most of what the server allocated on the slow path).
    /// </remarks>
    public async Task InTransactionAsync(string sql, Func<SqliteCommand, Task> work, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(work);
        try
        {
            var command = await CommandAsync(sql, cancellationToken);
            await RunAsync("BEGIN IMMEDIATE", cancellationToken);
            try
            {
                command.Transaction = null;
                await work(command);
                await RunAsync("COMMIT", CancellationToken.None);
            }
            catch
            {
                await RollBackAsync();
                throw;
            }
        }
        catch (Exception ex) when (!LeavesConnectionSound(ex))
        {
            await ResetAsync();
            throw;
        }
    }

    /// <summary>Sets the command's parameters to these names and values (the transaction as it is).</summary>
    public static void Bind(SqliteCommand command, params ReadOnlySpan<(string Name, object? Value)> parameters)
    {
        ArgumentNullException.ThrowIfNull(command);
        Bind(command, command.Transaction, parameters);
    }

    public async ValueTask DisposeAsync() => await ResetAsync();

    private async Task RunAsync(string sql, CancellationToken cancellationToken)
    {
        var command = await CommandAsync(sql, cancellationToken);
        command.Transaction = null;
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    /// <summary>Undoes the open transaction; when even that fails, the connection goes (closing it rolls back).</summary>
    private async Task RollBackAsync()
    {
        try
        {
            await RunAsync("ROLLBACK", CancellationToken.None);
        }
#pragma warning disable CA1031 // the caller's failure is the one to report; this one only costs the connection
        catch (Exception)
#pragma warning restore CA1031
        {
            await ResetAsync();
        }
    }

    private async Task<SqliteCommand> CommandAsync(string sql, CancellationToken cancellationToken)
    {
        _connection ??= await open(cancellationToken);
        if (_prepared.TryGetValue(sql, out var command))
        {
            return command;
        }

        if (_prepared.Count >= MostPrepared)
        {
            // Not expected (the texts are constants): start the cache again rather than grow it.
            foreach (var old in _prepared.Values)
            {
                await old.DisposeAsync();
            }

            _prepared.Clear();
        }

        command = _connection.CreateCommand();
        command.CommandText = sql;
        _prepared[sql] = command;
        return command;
    }

    /// <summary>The values in place when the names are those of the last run (the usual case), else the parameters anew.</summary>
    private static void Bind(SqliteCommand command, SqliteTransaction? transaction, ReadOnlySpan<(string Name, object? Value)> parameters)
    {
        command.Transaction = transaction;
        var bound = command.Parameters;
        var same = bound.Count == parameters.Length;
        for (var i = 0; same && i < parameters.Length; i++)
        {
            same = string.Equals(bound[i].ParameterName, parameters[i].Name, StringComparison.Ordinal);
        }

        if (!same)
        {
            bound.Clear();
            foreach (var (name, value) in parameters)
            {
                bound.AddWithValue(name, value ?? DBNull.Value);
            }

            return;
        }

        for (var i = 0; i < parameters.Length; i++)
        {
            bound[i].Value = parameters[i].Value ?? DBNull.Value;
        }
    }

    /// <summary>
    /// A constraint refused the write, or the caller cancelled before it ran (SQLite runs a statement
    /// through once started): the connection is as good as before.
    /// </summary>
    private static bool LeavesConnectionSound(Exception ex) => ex is SqliteException { SqliteErrorCode: 19 } or OperationCanceledException;

    /// <summary>After any other failure the connection and its statements are dropped, and the next write opens a new one.</summary>
    private async Task ResetAsync()
    {
        foreach (var command in _prepared.Values)
        {
            await command.DisposeAsync();
        }

        _prepared.Clear();
        if (_connection is { } connection)
        {
            _connection = null;
            await connection.DisposeAsync();
        }
    }
}
