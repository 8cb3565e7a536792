using System.Net.Sockets;
using Npgsql;

namespace Outpost.Server.Store;

/// <summary>
/// The schema and its versions. The database records its version in <c>schema_version</c>;
/// each start migrates it up, one step at a time, to the version this code knows, and refuses a
/// database that a newer server has already migrated past it.
/// </summary>
public sealed partial class PostgresControlPlaneStore
{
    /// <summary>The newest schema version this code knows: the number of <see cref="Migrations"/>.</summary>
    internal static int SchemaVersion => Migrations.Length;

    /// <summary>
    /// <c>Migrations[i]</c> takes the schema from version i to i + 1. Append only: a released step
    /// is never edited, since databases out there have run it.
    /// </summary>
    private static readonly string[] Migrations =
    [
        // 1: the schema of the SQLite store, in PostgreSQL types. Names, keys and cursors a reader
        // pages through sort as "C" (byte order) whatever the database's locale, as SQLite does.
        // JSON is kept as text: callers compare specs as strings, which jsonb would reformat.
        """
        CREATE TABLE resources (
          kind text COLLATE "C" NOT NULL,
          name text COLLATE "C" NOT NULL,
          uid text NOT NULL,
          resource_version bigint NOT NULL,
          generation bigint NOT NULL,
          created_at timestamptz NOT NULL,
          labels text NOT NULL,
          annotations text NOT NULL,
          spec text NOT NULL,
          status text NULL,
          PRIMARY KEY (kind, name)
        );
        CREATE TABLE changes (
          revision bigint PRIMARY KEY,
          kind text NOT NULL,
          name text NOT NULL,
          op integer NOT NULL,
          at timestamptz NOT NULL
        );
        CREATE TABLE store_meta (key text PRIMARY KEY, value bigint NOT NULL);
        CREATE TABLE blobs (
          digest text PRIMARY KEY,
          size bigint NOT NULL,
          content bytea NOT NULL,
          created_at timestamptz NOT NULL
        );
        -- Uncompressed out-of-line storage: reading a slice of a blob fetches only its chunks.
        ALTER TABLE blobs ALTER COLUMN content SET STORAGE EXTERNAL;
        CREATE TABLE records (
          cursor bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
          node text NOT NULL,
          sequence bigint NOT NULL,
          topic text COLLATE "C" NOT NULL,
          source text NOT NULL,
          payload bytea NOT NULL,
          created_ms bigint NOT NULL,
          ingested_ms bigint NOT NULL,
          UNIQUE (node, sequence)
        );
        CREATE INDEX records_by_topic ON records (topic, cursor);
        CREATE TABLE node_inventory (
          node text PRIMARY KEY,
          revision bigint NOT NULL,
          resources text NOT NULL
        );
        CREATE TABLE tokens (
          id text COLLATE "C" PRIMARY KEY,
          kind integer NOT NULL,
          secret_hash text NOT NULL,
          subject text NULL,
          created_at timestamptz NOT NULL,
          expires_at timestamptz NULL,
          description text NULL,
          role text NULL,
          max_uses integer NULL,
          uses integer NOT NULL DEFAULT 0,
          labels text NOT NULL DEFAULT '{}'
        );
        CREATE INDEX tokens_by_subject ON tokens (subject) WHERE subject IS NOT NULL;
        CREATE TABLE bucket_entries (
          bucket text COLLATE "C" NOT NULL,
          scope text COLLATE "C" NOT NULL,
          key text COLLATE "C" NOT NULL,
          value bytea NULL,
          deleted boolean NOT NULL,
          stamp text NOT NULL,
          base text NULL,
          revision bigint NOT NULL,
          updated_ms bigint NOT NULL,
          PRIMARY KEY (bucket, scope, key)
        );
        CREATE INDEX bucket_entries_by_revision ON bucket_entries (bucket, scope, revision);
        CREATE TABLE bucket_conflicts (
          id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
          bucket text NOT NULL,
          scope text NOT NULL,
          key text NOT NULL,
          winner_value bytea NULL,
          winner_deleted boolean NOT NULL,
          winner_stamp text NOT NULL,
          loser_value bytea NULL,
          loser_deleted boolean NOT NULL,
          loser_stamp text NOT NULL,
          at_ms bigint NOT NULL
        );
        CREATE INDEX bucket_conflicts_by_bucket ON bucket_conflicts (bucket, id);
        CREATE TABLE app_revisions (
          app text NOT NULL,
          revision bigint NOT NULL,
          digest text NOT NULL,
          spec text NOT NULL,
          created_ms bigint NOT NULL,
          outcome text NOT NULL DEFAULT '',
          PRIMARY KEY (app, revision)
        );
        CREATE TABLE audit (
          id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
          at_ms bigint NOT NULL,
          actor text NOT NULL,
          role text NOT NULL,
          verb text NOT NULL,
          path text NOT NULL,
          status integer NOT NULL,
          detail text NULL
        );
        CREATE TABLE node_certificates (
          serial text PRIMARY KEY,
          node text NOT NULL,
          not_after_ms bigint NOT NULL
        );
        CREATE INDEX node_certificates_by_node ON node_certificates (node);
        CREATE TABLE events (
          id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
          at_ms bigint NOT NULL,
          kind text NOT NULL,
          name text NOT NULL,
          type text NOT NULL,
          reason text NOT NULL,
          message text NOT NULL
        );
        CREATE INDEX events_by_name ON events (name, id);
        CREATE TABLE app_minutes (
          app text COLLATE "C" NOT NULL,
          revision bigint NOT NULL,
          node text COLLATE "C" NOT NULL,
          minute_ms bigint NOT NULL,
          requests bigint NOT NULL,
          client_errors bigint NOT NULL,
          server_errors bigint NOT NULL,
          timeouts bigint NOT NULL,
          limit_hits bigint NOT NULL,
          latency_sum double precision NOT NULL,
          buckets text NOT NULL,
          memory_peak bigint NOT NULL,
          PRIMARY KEY (app, revision, node, minute_ms)
        );
        CREATE INDEX app_minutes_by_minute ON app_minutes (minute_ms);
        CREATE TABLE node_minutes (
          node text COLLATE "C" NOT NULL,
          minute_ms bigint NOT NULL,
          usage text NOT NULL,
          PRIMARY KEY (node, minute_ms)
        );
        CREATE INDEX node_minutes_by_minute ON node_minutes (minute_ms);
        CREATE TABLE logs (
          id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
          node text COLLATE "C" NOT NULL,
          stream text NOT NULL,
          sequence bigint NOT NULL,
          at_ms bigint NOT NULL,
          level text NOT NULL,
          app text NOT NULL,
          revision bigint NOT NULL,
          message text NOT NULL,
          UNIQUE (node, stream, sequence)
        );
        CREATE INDEX logs_by_time ON logs (at_ms);
        CREATE INDEX logs_by_app ON logs (app, at_ms);
        CREATE TABLE alerts (
          rule text COLLATE "C" NOT NULL,
          target text COLLATE "C" NOT NULL,
          state text NOT NULL,
          value double precision NOT NULL,
          message text NOT NULL,
          active_ms bigint NOT NULL,
          fired_ms bigint NULL,
          resolved_ms bigint NULL,
          PRIMARY KEY (rule, target)
        );
        CREATE TABLE rollouts (
          app text PRIMARY KEY,
          revision bigint NOT NULL,
          stable bigint NOT NULL,
          state text NOT NULL
        );
        """,

        // 2: leader leases.
        """
        CREATE TABLE leases (
          name text PRIMARY KEY,
          holder text NOT NULL,
          epoch bigint NOT NULL,
          expires_ms bigint NOT NULL
        );
        """,

        // 3: what every replica holds alike (the fleet CA, the secrets key), sealed with the server token.
        """
        CREATE TABLE bootstrap (
          name text PRIMARY KEY,
          sealed bytea NOT NULL
        );
        """,

        // 4: which replica serves each node's sync stream.
        """
        CREATE TABLE node_presence (
          node text PRIMARY KEY,
          replica text NOT NULL,
          session bigint NOT NULL,
          since_ms bigint NOT NULL,
          connected boolean NOT NULL,
          beating boolean NOT NULL,
          last_beat_ms bigint NOT NULL
        );
        """,

        // 5: what nodes reported of app revisions' traffic, for the rollout gates on whichever replica leads.
        """
        CREATE TABLE traffic_samples (
          id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
          app text NOT NULL,
          revision bigint NOT NULL,
          node text NOT NULL,
          replica text NOT NULL,
          at_ms bigint NOT NULL,
          requests bigint NOT NULL,
          server_errors bigint NOT NULL
        );
        CREATE INDEX traffic_samples_by_time ON traffic_samples (at_ms);
        CREATE INDEX traffic_samples_by_app ON traffic_samples (app, revision, at_ms);
        """,

        // 6: the registry's tags (manifests and layers are blobs).
        """
        CREATE TABLE image_tags (
          repository text COLLATE "C" NOT NULL,
          tag text COLLATE "C" NOT NULL,
          digest text NOT NULL,
          updated_ms bigint NOT NULL,
          PRIMARY KEY (repository, tag)
        );
        """,
    ];

    /// <summary>
    /// Creates the schema on an empty database or migrates it up, in one transaction under the
    /// schema lock: replicas that start at once take turns, and the later ones find the work done.
    /// Then follows the revisions (<see cref="Changes"/>).
    /// </summary>
    public async Task InitializeAsync(CancellationToken cancellationToken)
    {
        await MigrateAsync(cancellationToken);
        await FollowAsync(cancellationToken);
    }

    private async Task MigrateAsync(CancellationToken cancellationToken)
    {
        await using var connection = await ConnectAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        await LockAsync(connection, LockKey.Schema, cancellationToken);
        var version = await SchemaVersionAsync(connection, cancellationToken);
        if (version > SchemaVersion)
        {
            // Nothing was written; disposing the transaction rolls back the lock alone.
            throw new InvalidOperationException(
                $"the database schema is version {version}; this server knows versions up to {SchemaVersion}: run a newer outpost server");
        }

        if (version == SchemaVersion)
        {
            return;
        }

        if (version == 0)
        {
            // One row, by construction (a table left empty by hand counts as version 0 too).
            await ExecuteAsync(connection, """
                CREATE TABLE IF NOT EXISTS schema_version (one boolean PRIMARY KEY DEFAULT true CHECK (one), version integer NOT NULL);
                INSERT INTO schema_version (version) VALUES (0) ON CONFLICT DO NOTHING;
                """, cancellationToken);
        }

        for (var step = version; step < SchemaVersion; step++)
        {
            await ExecuteAsync(connection, Migrations[step], cancellationToken);
        }

        await ExecuteAsync(connection, "UPDATE schema_version SET version = @version", cancellationToken, ("version", SchemaVersion));
        await transaction.CommitAsync(cancellationToken);
    }

    /// <summary>The database's schema version; 0 when it has no schema yet.</summary>
    private static async Task<int> SchemaVersionAsync(NpgsqlConnection connection, CancellationToken cancellationToken)
    {
        await using (var exists = Command(connection, "SELECT to_regclass('schema_version') IS NOT NULL"))
        {
            if (await exists.ExecuteScalarAsync(cancellationToken) is not true)
            {
                return 0;
            }
        }

        await using var read = Command(connection, "SELECT version FROM schema_version");
        return await read.ExecuteScalarAsync(cancellationToken) is int version ? version : 0;
    }

    /// <summary>Opens a connection; a server that cannot reach its database says which one.</summary>
    private async Task<NpgsqlConnection> ConnectAsync(CancellationToken cancellationToken)
    {
        try
        {
            return await _dataSource.OpenConnectionAsync(cancellationToken);
        }
        catch (Exception ex) when (ex is NpgsqlException or SocketException or TimeoutException)
        {
            var settings = new NpgsqlConnectionStringBuilder(_dataSource.ConnectionString);
            var reason = ex.InnerException is { } inner && !ex.Message.Contains(inner.Message, StringComparison.Ordinal) ? $"{ex.Message} ({inner.Message})" : ex.Message;
            throw new InvalidOperationException(
                $"cannot connect to PostgreSQL at {settings.Host}:{settings.Port} (database \"{settings.Database ?? settings.Username}\"): {reason}", ex);
        }
    }
}
