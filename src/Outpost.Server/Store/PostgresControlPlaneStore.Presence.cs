using NpgsqlTypes;
using Outpost.Core.Store;

namespace Outpost.Server.Store;

/// <summary>What replicas share of what they see: nodes' presence (see <see cref="IControlPlaneStore.SavePresenceAsync"/>) and the traffic nodes report.</summary>
public sealed partial class PostgresControlPlaneStore
{
    public async Task SavePresenceAsync(IReadOnlyCollection<NodePresence> presences, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(presences);
        if (presences.Count == 0)
        {
            return;
        }

        // One upsert. A node appears once (its newest session's last word), and rows go in name
        // order, so two replicas writing overlapping nodes lock them in the same order.
        var rows = presences.GroupBy(p => p.Node, StringComparer.Ordinal)
            .Select(g => g.Where(p => p.Since == g.Max(q => q.Since)).Last())
            .OrderBy(p => p.Node, StringComparer.Ordinal).ToArray();
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken);
        await using var upsert = Command(connection, """
            INSERT INTO node_presence (node, replica, session, since_ms, connected, beating, last_beat_ms)
            SELECT * FROM unnest(@node, @replica, @session, @since, @connected, @beating, @beat)
            ON CONFLICT (node) DO UPDATE SET replica = excluded.replica, session = excluded.session, since_ms = excluded.since_ms,
              connected = excluded.connected, beating = excluded.beating, last_beat_ms = excluded.last_beat_ms
            WHERE (node_presence.replica = excluded.replica AND node_presence.session = excluded.session) OR excluded.since_ms > node_presence.since_ms
            """);
        AddArray(upsert, "node", NpgsqlDbType.Text, rows.Select(p => p.Node).ToArray());
        AddArray(upsert, "replica", NpgsqlDbType.Text, rows.Select(p => p.Replica).ToArray());
        AddArray(upsert, "session", NpgsqlDbType.Bigint, rows.Select(p => p.Session).ToArray());
        AddArray(upsert, "since", NpgsqlDbType.Bigint, rows.Select(p => p.Since.ToUnixTimeMilliseconds()).ToArray());
        AddArray(upsert, "connected", NpgsqlDbType.Boolean, rows.Select(p => p.Connected).ToArray());
        AddArray(upsert, "beating", NpgsqlDbType.Boolean, rows.Select(p => p.Beating).ToArray());
        AddArray(upsert, "beat", NpgsqlDbType.Bigint, rows.Select(p => p.LastBeat.ToUnixTimeMilliseconds()).ToArray());
        await upsert.ExecuteNonQueryAsync(cancellationToken);
    }

    public async Task<IReadOnlyList<NodePresence>> ListPresenceAsync(CancellationToken cancellationToken)
    {
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken);
        await using var command = Command(connection, "SELECT node, replica, session, since_ms, connected, beating, last_beat_ms FROM node_presence ORDER BY node");
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        var presences = new List<NodePresence>();
        while (await reader.ReadAsync(cancellationToken))
        {
            presences.Add(new NodePresence(reader.GetString(0), reader.GetString(1), reader.GetInt64(2), DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(3)),
                reader.GetBoolean(4), reader.GetBoolean(5), DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(6))));
        }

        return presences;
    }

    public async Task AppendTrafficAsync(IReadOnlyCollection<TrafficSample> samples, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(samples);
        if (samples.Count == 0)
        {
            return;
        }

        var rows = samples.ToArray();
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken);
        await using var insert = Command(connection, """
            INSERT INTO traffic_samples (app, revision, node, replica, at_ms, requests, server_errors)
            SELECT * FROM unnest(@app, @revision, @node, @replica, @at, @requests, @errors)
            """);
        AddArray(insert, "app", NpgsqlDbType.Text, rows.Select(t => t.App).ToArray());
        AddArray(insert, "revision", NpgsqlDbType.Bigint, rows.Select(t => t.Revision).ToArray());
        AddArray(insert, "node", NpgsqlDbType.Text, rows.Select(t => t.Node).ToArray());
        AddArray(insert, "replica", NpgsqlDbType.Text, rows.Select(t => t.Replica).ToArray());
        AddArray(insert, "at", NpgsqlDbType.Bigint, rows.Select(t => t.At.ToUnixTimeMilliseconds()).ToArray());
        AddArray(insert, "requests", NpgsqlDbType.Bigint, rows.Select(t => t.Requests).ToArray());
        AddArray(insert, "errors", NpgsqlDbType.Bigint, rows.Select(t => t.ServerErrors).ToArray());
        await insert.ExecuteNonQueryAsync(cancellationToken);
    }

    public async Task<(long Requests, long ServerErrors)> SumTrafficAsync(string app, long revision, DateTimeOffset since, string? exceptReplica, CancellationToken cancellationToken)
    {
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken);
        await using var command = Command(connection, """
            SELECT COALESCE(SUM(requests), 0)::bigint, COALESCE(SUM(server_errors), 0)::bigint FROM traffic_samples
            WHERE app = @app AND revision = @revision AND at_ms >= @since AND (@except::text IS NULL OR replica <> @except::text)
            """, ("app", app), ("revision", revision), ("since", since.ToUnixTimeMilliseconds()), ("except", exceptReplica));
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        await reader.ReadAsync(cancellationToken);
        return (reader.GetInt64(0), reader.GetInt64(1));
    }

    public async Task PruneTrafficAsync(DateTimeOffset before, CancellationToken cancellationToken)
    {
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken);
        await ExecuteAsync(connection, "DELETE FROM traffic_samples WHERE at_ms < @before", cancellationToken, ("before", before.ToUnixTimeMilliseconds()));
    }
}
