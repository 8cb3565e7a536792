using System.Text.Json.Nodes;
using Npgsql;
using Outpost.Core.Resources;
using Outpost.Core.Rollouts;
using Outpost.Core.Store;

namespace Outpost.Server.Store;

/// <summary>Application revisions and rollout state.</summary>
public sealed partial class PostgresControlPlaneStore
{
    private const string RevisionColumns = "app, revision, digest, spec, created_ms, outcome";

    /// <summary>An Application's new generation is a revision, kept with the write that made it.</summary>
    private async Task RecordRevisionAsync(NpgsqlConnection connection, StoredResource resource, CancellationToken cancellationToken)
    {
        if (resource.Kind != ResourceKind.Application.Kind)
        {
            return;
        }

        var digest = resource.Spec()["module"]?["digest"]?.GetValue<string>() ?? "";
        await ExecuteAsync(connection, """
            INSERT INTO app_revisions (app, revision, digest, spec, created_ms) VALUES (@app, @rev, @digest, @spec, @at)
            ON CONFLICT (app, revision) DO UPDATE SET digest = excluded.digest, spec = excluded.spec, created_ms = excluded.created_ms
            """, cancellationToken,
            ("app", resource.Name), ("rev", resource.Generation), ("digest", digest), ("spec", resource.SpecJson), ("at", _time.GetUtcNow().ToUnixTimeMilliseconds()));
    }

    public async Task<IReadOnlyList<AppRevision>> ListAppRevisionsAsync(string app, int limit, CancellationToken cancellationToken)
    {
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken);
        await using var command = Command(connection, $"SELECT {RevisionColumns} FROM app_revisions WHERE app = @app ORDER BY revision DESC LIMIT @limit",
            ("app", app), ("limit", limit));
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        var revisions = new List<AppRevision>();
        while (await reader.ReadAsync(cancellationToken))
        {
            revisions.Add(ReadRevision(reader));
        }

        return revisions;
    }

    public async Task<AppRevision?> GetAppRevisionAsync(string app, long revision, CancellationToken cancellationToken)
    {
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken);
        await using var command = Command(connection, $"SELECT {RevisionColumns} FROM app_revisions WHERE app = @app AND revision = @rev", ("app", app), ("rev", revision));
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        return await reader.ReadAsync(cancellationToken) ? ReadRevision(reader) : null;
    }

    public async Task SetRevisionOutcomeAsync(string app, long revision, string outcome, CancellationToken cancellationToken)
    {
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken);
        await ExecuteAsync(connection, "UPDATE app_revisions SET outcome = @outcome WHERE app = @app AND revision = @rev", cancellationToken,
            ("outcome", outcome), ("app", app), ("rev", revision));
    }

    /// <summary>Under the change-log lock, so no rollout save or Application write moves underneath the choice of what to keep.</summary>
    public async Task PruneAppRevisionsAsync(int keep, CancellationToken cancellationToken)
    {
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        await LockAsync(connection, LockKey.Changes, cancellationToken);
        await ExecuteAsync(connection, """
            DELETE FROM app_revisions r
            USING (SELECT app, revision, ROW_NUMBER() OVER (PARTITION BY app ORDER BY revision DESC) AS n FROM app_revisions) ranked
            WHERE r.app = ranked.app AND r.revision = ranked.revision AND ranked.n > @keep
              AND NOT EXISTS (SELECT 1 FROM rollouts WHERE rollouts.app = r.app AND (rollouts.revision = r.revision OR rollouts.stable = r.revision))
            """, cancellationToken, ("keep", keep));
        await transaction.CommitAsync(cancellationToken);
    }

    public async Task<IReadOnlyDictionary<string, RolloutState>> ListRolloutsAsync(CancellationToken cancellationToken)
    {
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken);
        await using var command = Command(connection, "SELECT app, state FROM rollouts");
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        var rollouts = new Dictionary<string, RolloutState>(StringComparer.Ordinal);
        while (await reader.ReadAsync(cancellationToken))
        {
            rollouts[reader.GetString(0)] = RolloutState.FromJson(JsonNode.Parse(reader.GetString(1))!.AsObject());
        }

        return rollouts;
    }

    /// <summary>
    /// Under the change-log lock whether or not it appends a change: the app's existence is
    /// checked against the writes before it, and a delete of the app cannot slip in between.
    /// </summary>
    public async Task<long> SaveRolloutAsync(string app, RolloutState state, bool movesNodes, Fence? fence, CancellationToken cancellationToken, RolloutState? unchangedFrom = null)
    {
        ArgumentNullException.ThrowIfNull(state);
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        await LockAsync(connection, LockKey.Changes, cancellationToken);
        if (await GetAsync(connection, ResourceKind.Application.Kind, app, cancellationToken) is null)
        {
            throw new StoreException(StoreError.NotFound, ResourceKind.Application.Kind, app, $"Application \"{app}\" not found");
        }

        await CheckFenceAsync(connection, fence, cancellationToken);
        if (unchangedFrom is not null)
        {
            // Every rollout save holds the change-log lock: nothing writes the row between this read and the write.
            await using var read = Command(connection, "SELECT state FROM rollouts WHERE app = @app", ("app", app));
            RolloutPrecondition.Check(app, await read.ExecuteScalarAsync(cancellationToken) as string, unchangedFrom);
        }

        var revision = movesNodes ? await AppendChangeAsync(connection, "Rollout", app, ChangeOp.Upserted, cancellationToken) : 0;
        await ExecuteAsync(connection, """
            INSERT INTO rollouts (app, revision, stable, state) VALUES (@app, @rev, @stable, @state)
            ON CONFLICT (app) DO UPDATE SET revision = excluded.revision, stable = excluded.stable, state = excluded.state
            """, cancellationToken,
            ("app", app), ("rev", state.Revision), ("stable", state.StableRevision), ("state", state.ToJson().ToJsonString()));
        await NotifyAsync(connection, ChangesChannel, revision, cancellationToken);
        await transaction.CommitAsync(cancellationToken);
        Changes.Publish(revision);
        return revision;
    }

    private static AppRevision ReadRevision(NpgsqlDataReader reader) =>
        new(reader.GetString(0), reader.GetInt64(1), reader.GetString(2), reader.GetString(3), DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(4)), reader.GetString(5));
}
