using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Npgsql;

namespace Outpost.Server.Tests.Store;

/// <summary>
/// A throwaway PostgreSQL server for the test run: initdb into a temp dir, listening only on a
/// Unix socket in another, stopped and deleted when the run ends. Each test takes a database of
/// its own (<see cref="CreateDatabaseAsync"/>), so tests share nothing but the server.
/// </summary>
public sealed class PostgresServer : IAsyncLifetime
{
    private string _bin = "";
    private string _dataDir = "";
    private string _socketDir = "";
    private NpgsqlDataSource? _admin;

    /// <summary>The socket directory, which Npgsql takes as the host.</summary>
    public string Host => _socketDir;

    public int Port { get; private set; }

    public async Task InitializeAsync()
    {
        _bin = Directory.Exists("/usr/lib/postgresql")
            ? Directory.GetDirectories("/usr/lib/postgresql")
                .Where(d => File.Exists(Path.Combine(d, "bin", "initdb")))
                .OrderByDescending(d => int.TryParse(Path.GetFileName(d), out var major) ? major : 0)
                .Select(d => Path.Combine(d, "bin"))
                .FirstOrDefault() ?? ""
            : "";
        if (_bin.Length == 0)
        {
            throw new InvalidOperationException(
                "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): install it (apt-get install postgresql; test.sh does in CI) to run the PostgreSQL store tests");
        }

        _dataDir = Directory.CreateTempSubdirectory("outpost-pg-data-").FullName;
        _socketDir = Directory.CreateTempSubdirectory("outpost-pg-sock-").FullName;
        Port = FreePort();
        try
        {
            await StartAsync();
        }
        catch
        {
            await DisposeAsync(); // a server half started is stopped and its directories go
            throw;
        }
    }

    private async Task StartAsync()
    {
        if (Environment.IsPrivilegedProcess)
        {
            // initdb refuses root: the server runs as the postgres user, in directories it owns.
            await RunAsync("chown", ["postgres:", _dataDir, _socketDir]);
        }

        await RunAsync(Path.Combine(_bin, "initdb"), ["-D", _dataDir, "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--no-sync"], asPostgres: true);
        // Durability is not under test here: no fsync makes each CREATE DATABASE and commit cheap.
        await RunAsync(Path.Combine(_bin, "pg_ctl"),
        [
            "-D", _dataDir, "-l", Path.Combine(_dataDir, "server.log"), "-w", "-t", "60",
            "-o", $"-k {_socketDir} -p {Port} -c listen_addresses='' -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300",
            "start",
        ], asPostgres: true);
        _admin = NpgsqlDataSource.Create(ConnectionString("postgres"));
    }

    /// <summary>A connection string for a database of this server.</summary>
    public string ConnectionString(string database) =>
        new NpgsqlConnectionStringBuilder { Host = _socketDir, Port = Port, Username = "postgres", Database = database }.ConnectionString;

    /// <summary>Creates an empty database and returns its connection string.</summary>
    public async Task<string> CreateDatabaseAsync()
    {
        var name = $"t_{Guid.NewGuid():N}";
        await using var command = _admin!.CreateCommand($"CREATE DATABASE {name}");
        await command.ExecuteNonQueryAsync();
        return ConnectionString(name);
    }

    /// <summary>Runs SQL as the superuser on the maintenance database (ALTER DATABASE, pg_terminate_backend).</summary>
    public async Task AdminAsync(string sql)
    {
        await using var command = _admin!.CreateCommand(sql);
        await command.ExecuteNonQueryAsync();
    }

    /// <summary>One value from SQL run as the superuser on the maintenance database.</summary>
    public async Task<T> AdminScalarAsync<T>(string sql)
    {
        await using var command = _admin!.CreateCommand(sql);
        return (T)(await command.ExecuteScalarAsync())!;
    }

    /// <summary>Drops a database, closing whatever connections to it are left.</summary>
    public void DropDatabase(string connectionString)
    {
        var name = new NpgsqlConnectionStringBuilder(connectionString).Database;
        using var command = _admin!.CreateCommand($"DROP DATABASE IF EXISTS {name} WITH (FORCE)");
        command.ExecuteNonQuery();
    }

    public async Task DisposeAsync()
    {
        if (_admin is not null)
        {
            await _admin.DisposeAsync();
        }

        if (File.Exists(Path.Combine(_dataDir, "postmaster.pid")))
        {
            await RunAsync(Path.Combine(_bin, "pg_ctl"), ["-D", _dataDir, "-m", "immediate", "-w", "stop"], asPostgres: true);
        }

        foreach (var dir in new[] { _dataDir, _socketDir }.Where(d => d.Length > 0 && Directory.Exists(d)))
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    /// <summary>Runs a tool to its end (as postgres when we are root), failing with its output.</summary>
    private static async Task RunAsync(string file, IReadOnlyList<string> args, bool asPostgres = false)
    {
        var start = new ProcessStartInfo
        {
            FileName = asPostgres && Environment.IsPrivilegedProcess ? "runuser" : file,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            // Somewhere the postgres user may stand (the test's own directory may be closed to it).
            WorkingDirectory = Path.GetTempPath(),
        };
        if (asPostgres && Environment.IsPrivilegedProcess)
        {
            foreach (var arg in (string[])["-u", "postgres", "--", file])
            {
                start.ArgumentList.Add(arg);
            }
        }

        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }

        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(90));
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{Path.GetFileName(file)} {string.Join(' ', args)} did not finish in 90 s");
        }

        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"{Path.GetFileName(file)} {string.Join(' ', args)} exited with {process.ExitCode}:\n{await stdout}\n{await stderr}");
        }
    }
}

/// <summary>Every PostgreSQL test class shares the one server (and so runs one at a time, beside the other collections).</summary>
[CollectionDefinition(Name)]
public sealed class PostgresTests : ICollectionFixture<PostgresServer>
{
    public const string Name = "PostgreSQL";
}
