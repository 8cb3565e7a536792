using System.Globalization;
using Microsoft.Data.Sqlite;

namespace Outpost.Agent.State;

/// <summary>The node's identity as the server issued it.</summary>
public sealed record NodeIdentity(string ServerUrl, string NodeName, string NodeUid, string NodeToken);

/// <summary>A desired resource as the agent keeps it: the API object JSON plus its versions.</summary>
public sealed record DesiredResource(string Kind, string Name, long ResourceVersion, long Generation, string Json);

/// <summary>
/// The agent's durable state in one SQLite file (WAL): identity, desired resources and the
/// applied revision. The agent acks a revision only after it is committed here, so a restart
/// (even with the server down) comes back to exactly what was acked.
/// </summary>
public sealed class AgentStore : IDisposable
{
    private readonly string _connectionString;

    public AgentStore(string path)
    {
        _connectionString = new SqliteConnectionStringBuilder { DataSource = path, Mode = SqliteOpenMode.ReadWriteCreate, Pooling = true }.ToString();
        using var connection = Sql.Open(_connectionString);
        Sql.Execute(connection, null, """
            PRAGMA journal_mode = WAL;
            CREATE TABLE IF NOT EXISTS identity (
              id INTEGER PRIMARY KEY CHECK (id = 1),
              server_url TEXT NOT NULL, node_name TEXT NOT NULL, node_uid TEXT NOT NULL, node_token TEXT NOT NULL
            );
            CREATE TABLE IF NOT EXISTS desired (
              kind TEXT NOT NULL, name TEXT NOT NULL, resource_version INTEGER NOT NULL, generation INTEGER NOT NULL, json TEXT NOT NULL,
              PRIMARY KEY (kind, name)
            );
            CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS last_good (
              name TEXT PRIMARY KEY, resource_version INTEGER NOT NULL, generation INTEGER NOT NULL, json TEXT NOT NULL
            );
            CREATE TABLE IF NOT EXISTS rejected (
              name TEXT PRIMARY KEY, generation INTEGER NOT NULL, reason TEXT NOT NULL
            );
            """);
    }

    /// <summary>
    /// The last revision of each app that served here (passed its readiness probe, if it has one):
    /// what the node falls back to when a newer revision fails, even after a restart and offline.
    /// </summary>
    public IReadOnlyDictionary<string, DesiredResource> LoadLastGood()
    {
        using var connection = Sql.Open(_connectionString);
        using var command = Sql.Command(connection, null, "SELECT name, resource_version, generation, json FROM last_good");
        using var reader = command.ExecuteReader();
        var result = new Dictionary<string, DesiredResource>(StringComparer.Ordinal);
        while (reader.Read())
        {
            result[reader.GetString(0)] = new DesiredResource("Application", reader.GetString(0), reader.GetInt64(1), reader.GetInt64(2), reader.GetString(3));
        }

        return result;
    }

    public void SaveLastGood(DesiredResource app)
    {
        ArgumentNullException.ThrowIfNull(app);
        using var connection = Sql.Open(_connectionString);
        Sql.Execute(connection, null, """
            INSERT INTO last_good (name, resource_version, generation, json) VALUES ($name, $rv, $gen, $json)
            ON CONFLICT (name) DO UPDATE SET resource_version = $rv, generation = $gen, json = $json
            """, ("$name", app.Name), ("$rv", app.ResourceVersion), ("$gen", app.Generation), ("$json", app.Json));
    }

    public void ForgetLastGood(string name)
    {
        using var connection = Sql.Open(_connectionString);
        Sql.Execute(connection, null, "DELETE FROM last_good WHERE name = $name; DELETE FROM rejected WHERE name = $name", ("$name", name));
    }

    /// <summary>Per app, the revision this node rolled back from (or whose probe failed) and why: it does not run it again.</summary>
    public IReadOnlyDictionary<string, (long Generation, string Reason)> LoadRejected()
    {
        using var connection = Sql.Open(_connectionString);
        using var command = Sql.Command(connection, null, "SELECT name, generation, reason FROM rejected");
        using var reader = command.ExecuteReader();
        var result = new Dictionary<string, (long, string)>(StringComparer.Ordinal);
        while (reader.Read())
        {
            result[reader.GetString(0)] = (reader.GetInt64(1), reader.GetString(2));
        }

        return result;
    }

    public void SaveRejected(string name, long generation, string reason)
    {
        using var connection = Sql.Open(_connectionString);
        Sql.Execute(connection, null, """
            INSERT INTO rejected (name, generation, reason) VALUES ($name, $gen, $reason)
            ON CONFLICT (name) DO UPDATE SET generation = $gen, reason = $reason
            """, ("$name", name), ("$gen", generation), ("$reason", reason));
    }

    public void ForgetRejected(string name)
    {
        using var connection = Sql.Open(_connectionString);
        Sql.Execute(connection, null, "DELETE FROM rejected WHERE name = $name", ("$name", name));
    }

    public NodeIdentity? LoadIdentity()
    {
        using var connection = Sql.Open(_connectionString);
        using var command = Sql.Command(connection, null, "SELECT server_url, node_name, node_uid, node_token FROM identity WHERE id = 1");
        using var reader = command.ExecuteReader();
        return reader.Read() ? new NodeIdentity(reader.GetString(0), reader.GetString(1), reader.GetString(2), reader.GetString(3)) : null;
    }

    public void SaveIdentity(NodeIdentity identity)
    {
        ArgumentNullException.ThrowIfNull(identity);
        using var connection = Sql.Open(_connectionString);
        Sql.Execute(connection, null, """
            INSERT INTO identity (id, server_url, node_name, node_uid, node_token) VALUES (1, $url, $name, $uid, $token)
            ON CONFLICT (id) DO UPDATE SET server_url = $url, node_name = $name, node_uid = $uid, node_token = $token
            """, ("$url", identity.ServerUrl), ("$name", identity.NodeName), ("$uid", identity.NodeUid), ("$token", identity.NodeToken));
    }

    public void ClearIdentity()
    {
        using var connection = Sql.Open(_connectionString);
        Sql.Execute(connection, null, "DELETE FROM identity");
    }

    public long AppliedRevision
    {
        get
        {
            using var connection = Sql.Open(_connectionString);
            using var command = Sql.Command(connection, null, "SELECT value FROM meta WHERE key = 'applied_revision'");
            return command.ExecuteScalar() is string s ? long.Parse(s, CultureInfo.InvariantCulture) : 0;
        }
    }

    public IReadOnlyList<DesiredResource> LoadDesired()
    {
        using var connection = Sql.Open(_connectionString);
        using var command = Sql.Command(connection, null, "SELECT kind, name, resource_version, generation, json FROM desired ORDER BY kind, name");
        using var reader = command.ExecuteReader();
        var result = new List<DesiredResource>();
        while (reader.Read())
        {
            result.Add(new DesiredResource(reader.GetString(0), reader.GetString(1), reader.GetInt64(2), reader.GetInt64(3), reader.GetString(4)));
        }

        return result;
    }

    /// <summary>Applies one config update in one transaction: a snapshot replaces everything.</summary>
    public void Apply(long revision, bool snapshot, IEnumerable<DesiredResource> upserts, IEnumerable<(string Kind, string Name)> deletes)
    {
        ArgumentNullException.ThrowIfNull(upserts);
        ArgumentNullException.ThrowIfNull(deletes);
        using var connection = Sql.Open(_connectionString);
        using var transaction = connection.BeginTransaction(deferred: false);
        if (snapshot)
        {
            Sql.Execute(connection, transaction, "DELETE FROM desired");
        }

        foreach (var (kind, name) in deletes)
        {
            Sql.Execute(connection, transaction, "DELETE FROM desired WHERE kind = $kind AND name = $name", ("$kind", kind), ("$name", name));
        }

        foreach (var r in upserts)
        {
            Sql.Execute(connection, transaction, """
                INSERT INTO desired (kind, name, resource_version, generation, json) VALUES ($kind, $name, $rv, $gen, $json)
                ON CONFLICT (kind, name) DO UPDATE SET resource_version = $rv, generation = $gen, json = $json
                """, ("$kind", r.Kind), ("$name", r.Name), ("$rv", r.ResourceVersion), ("$gen", r.Generation), ("$json", r.Json));
        }

        Sql.Execute(connection, transaction, "INSERT INTO meta (key, value) VALUES ('applied_revision', $rev) ON CONFLICT (key) DO UPDATE SET value = $rev",
            ("$rev", revision.ToString(CultureInfo.InvariantCulture)));
        transaction.Commit();
    }

    public void Dispose() => SqliteConnection.ClearAllPools();
}
