using System.Text.Json.Nodes;
using Microsoft.Data.Sqlite;
using Outpost.Core.Resources;
using Outpost.Core.Rollouts;
using Outpost.Core.Store;

namespace Outpost.Server.Store;

/// <summary>Application revisions and rollout state.</summary>
public sealed partial class SqliteControlPlaneStore
{
    public async Task<AppRevision?> GetAppRevisionAsync(string app, long revision, CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync(cancellationToken);
        await using var command = Command(connection, null, "SELECT app, revision, digest, spec, created_ms, outcome FROM app_revisions WHERE app = $app AND revision = $rev",
            ("$app", app), ("$rev", revision));
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        return await reader.ReadAsync(cancellationToken) ? ReadRevision(reader) : null;
    }

    public async Task SetRevisionOutcomeAsync(string app, long revision, string outcome, CancellationToken cancellationToken)
    {
        await ExecuteLockedAsync("UPDATE app_revisions SET outcome = $outcome WHERE app = $app AND revision = $rev", cancellationToken,
            ("$outcome", outcome), ("$app", app), ("$rev", revision));
    }

    public async Task PruneAppRevisionsAsync(int keep, CancellationToken cancellationToken)
    {
        await ExecuteLockedAsync("""
            DELETE FROM app_revisions WHERE rowid IN (
              SELECT rowid FROM (SELECT rowid, app, revision, ROW_NUMBER() OVER (PARTITION BY app ORDER BY revision DESC) AS n FROM app_revisions) AS r
              WHERE n > $keep AND NOT EXISTS (SELECT 1 FROM rollouts WHERE rollouts.app = r.app AND (rollouts.revision = r.revision OR rollouts.stable = r.revision)))
            """, cancellationToken, ("$keep", keep));
    }

    public async Task<IReadOnlyDictionary<string, RolloutState>> ListRolloutsAsync(CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync(cancellationToken);
        await using var command = Command(connection, null, "SELECT app, state FROM rollouts");
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        var rollouts = new Dictionary<string, RolloutState>(StringComparer.Ordinal);
        while (await reader.ReadAsync(cancellationToken))
        {
            rollouts[reader.GetString(0)] = RolloutState.FromJson(JsonNode.Parse(reader.GetString(1))!.AsObject());
        }

        return rollouts;
    }

    public async Task<long> SaveRolloutAsync(string app, RolloutState state, bool movesNodes, Fence? fence, CancellationToken cancellationToken, RolloutState? unchangedFrom = null)
    {
        ArgumentNullException.ThrowIfNull(state);
        await _writeLock.WaitAsync(cancellationToken);
        try
        {
            await using var connection = await OpenAsync(cancellationToken);
            await using var transaction = connection.BeginTransaction(deferred: false);
            if (await GetAsync(connection, transaction, ResourceKind.Application.Kind, app, cancellationToken) is null)
            {
                throw new StoreException(StoreError.NotFound, ResourceKind.Application.Kind, app, $"Application \"{app}\" not found");
            }

            await CheckFenceAsync(connection, transaction, fence, cancellationToken);
            if (unchangedFrom is not null)
            {
                await using var read = Command(connection, transaction, "SELECT state FROM rollouts WHERE app = $app", ("$app", app));
                RolloutPrecondition.Check(app, await read.ExecuteScalarAsync(cancellationToken) as string, unchangedFrom);
            }

            var revision = movesNodes ? await AppendChangeAsync(connection, transaction, "Rollout", app, ChangeOp.Upserted, cancellationToken) : 0;
            await ExecuteAsync(connection, transaction, """
                INSERT INTO rollouts (app, revision, stable, state) VALUES ($app, $rev, $stable, $state)
                ON CONFLICT (app) DO UPDATE SET revision = $rev, stable = $stable, state = $state
                """, cancellationToken,
                ("$app", app), ("$rev", state.Revision), ("$stable", state.StableRevision), ("$state", state.ToJson().ToJsonString()));
            await transaction.CommitAsync(cancellationToken);
            PublishAppended();
            return revision;
        }
        finally
        {
            ReleaseWriteLock();
        }
    }

    private static AppRevision ReadRevision(SqliteDataReader reader) =>
        new(reader.GetString(0), reader.GetInt64(1), reader.GetString(2), reader.GetString(3), DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(4)),
            reader.IsDBNull(5) ? "" : reader.GetString(5));

    /// <summary>Data dirs from before rollout outcomes: add the column.</summary>
    private static async Task MigrateRevisionsAsync(SqliteConnection connection, CancellationToken cancellationToken)
    {
        await using (var info = Command(connection, null, "SELECT COUNT(*) FROM pragma_table_info('app_revisions') WHERE name = 'outcome'"))
        {
            if ((long)(await info.ExecuteScalarAsync(cancellationToken))! > 0)
            {
                return;
            }
        }

        await ExecuteAsync(connection, null, "ALTER TABLE app_revisions ADD COLUMN outcome TEXT NOT NULL DEFAULT ''", cancellationToken);
    }
}
