using Microsoft.Data.Sqlite;
using Outpost.Core.Store;

namespace Outpost.Server.Store;

/// <summary>Nodes' presence as replicas saw it (see <see cref="IControlPlaneStore.SavePresenceAsync"/>).</summary>
public sealed partial class SqliteControlPlaneStore
{
    public async Task SavePresenceAsync(IReadOnlyCollection<NodePresence> presences, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(presences);
        if (presences.Count == 0)
        {
            return;
        }

        await _writeLock.WaitAsync(cancellationToken);
        try
        {
            await using var connection = await OpenAsync(cancellationToken);
            await using var transaction = connection.BeginTransaction(deferred: false);
            foreach (var p in presences)
            {
                await ExecuteAsync(connection, transaction, """
                    INSERT INTO node_presence (node, replica, session, since_ms, connected, beating, last_beat_ms)
                    VALUES ($node, $replica, $session, $since, $connected, $beating, $beat)
                    ON CONFLICT (node) DO UPDATE SET replica = excluded.replica, session = excluded.session, since_ms = excluded.since_ms,
                      connected = excluded.connected, beating = excluded.beating, last_beat_ms = excluded.last_beat_ms
                    WHERE (node_presence.replica = excluded.replica AND node_presence.session = excluded.session) OR excluded.since_ms > node_presence.since_ms
                    """, cancellationToken,
                    ("$node", p.Node), ("$replica", p.Replica), ("$session", p.Session), ("$since", p.Since.ToUnixTimeMilliseconds()),
                    ("$connected", p.Connected), ("$beating", p.Beating), ("$beat", p.LastBeat.ToUnixTimeMilliseconds()));
            }

            await transaction.CommitAsync(cancellationToken);
        }
        finally
        {
            ReleaseWriteLock();
        }
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
}
