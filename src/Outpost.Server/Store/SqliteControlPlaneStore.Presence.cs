using Microsoft.Data.Sqlite;
using Outpost.Core.Store;

namespace Outpost.Server.Store;

/// <summary>What replicas share of what they see: nodes' presence (see <see cref="IControlPlaneStore.SavePresenceAsync"/>) and the traffic nodes report.</summary>
public sealed partial class SqliteControlPlaneStore
{
    public Task SavePresenceAsync(IReadOnlyCollection<NodePresence> presences, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(presences);
        return ExecuteEachLockedAsync(presences, """
            INSERT INTO node_presence (node, replica, session, since_ms, connected, beating, last_beat_ms)
            VALUES ($node, $replica, $session, $since, $connected, $beating, $beat)
            ON CONFLICT (node) DO UPDATE SET replica = excluded.replica, session = excluded.session, since_ms = excluded.since_ms,
              connected = excluded.connected, beating = excluded.beating, last_beat_ms = excluded.last_beat_ms
            WHERE (node_presence.replica = excluded.replica AND node_presence.session = excluded.session) OR excluded.since_ms > node_presence.since_ms
            """, p => [("$node", p.Node), ("$replica", p.Replica), ("$session", p.Session), ("$since", p.Since.ToUnixTimeMilliseconds()),
                ("$connected", p.Connected), ("$beating", p.Beating), ("$beat", p.LastBeat.ToUnixTimeMilliseconds())], cancellationToken);
    }

    public async Task<IReadOnlyList<NodePresence>> ListPresenceAsync(CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync(cancellationToken);
        await using var command = Command(connection, null, "SELECT node, replica, session, since_ms, connected, beating, last_beat_ms FROM node_presence ORDER BY node");
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        var presences = new List<NodePresence>();
        while (await reader.ReadAsync(cancellationToken))
        {
            presences.Add(ReadPresence(reader));
        }

        return presences;
    }

    private static NodePresence ReadPresence(SqliteDataReader reader) => new(
        reader.GetString(0), reader.GetString(1), reader.GetInt64(2), DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(3)),
        reader.GetBoolean(4), reader.GetBoolean(5), DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(6)));

    public Task AppendTrafficAsync(IReadOnlyCollection<TrafficSample> samples, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(samples);
        return ExecuteEachLockedAsync(samples, """
            INSERT INTO traffic_samples (app, revision, node, replica, at_ms, requests, server_errors)
            VALUES ($app, $revision, $node, $replica, $at, $requests, $errors)
            """, t => [("$app", t.App), ("$revision", t.Revision), ("$node", t.Node), ("$replica", t.Replica), ("$at", t.At.ToUnixTimeMilliseconds()),
                ("$requests", t.Requests), ("$errors", t.ServerErrors)], cancellationToken);
    }

    public async Task<(long Requests, long ServerErrors)> SumTrafficAsync(string app, long revision, DateTimeOffset since, string? exceptReplica, CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync(cancellationToken);
        await using var command = Command(connection, null, """
            SELECT COALESCE(SUM(requests), 0), COALESCE(SUM(server_errors), 0) FROM traffic_samples
            WHERE app = $app AND revision = $revision AND at_ms >= $since AND ($except IS NULL OR replica <> $except)
            """, ("$app", app), ("$revision", revision), ("$since", since.ToUnixTimeMilliseconds()), ("$except", exceptReplica));
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        await reader.ReadAsync(cancellationToken);
        return (reader.GetInt64(0), reader.GetInt64(1));
    }

    public Task PruneTrafficAsync(DateTimeOffset before, CancellationToken cancellationToken) =>
        ExecuteLockedAsync("DELETE FROM traffic_samples WHERE at_ms < $before", cancellationToken, ("$before", before.ToUnixTimeMilliseconds()));
}
