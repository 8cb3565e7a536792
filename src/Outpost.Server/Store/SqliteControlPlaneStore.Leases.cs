using Microsoft.Data.Sqlite;
using Outpost.Core.Store;

namespace Outpost.Server.Store;

/// <summary>Leader leases (see <see cref="IControlPlaneStore.AcquireLeaseAsync"/>); times are the server's clock.</summary>
public sealed partial class SqliteControlPlaneStore
{
    public async Task<LeaderLease> AcquireLeaseAsync(string name, string holder, TimeSpan ttl, CancellationToken cancellationToken)
    {
        var now = _time.GetUtcNow();
        // Ahead of the writes queued: a storm's node writes must not cost the controllers their lease.
        await _writeLock.WaitUrgentAsync(cancellationToken);
        try
        {
            await using var connection = await OpenAsync(cancellationToken);
            await ExecuteAsync(connection, null, """
                INSERT INTO leases (name, holder, epoch, expires_ms) VALUES ($name, $holder, 1, $expires)
                ON CONFLICT (name) DO UPDATE SET
                  epoch = CASE WHEN holder = $holder AND expires_ms > $now THEN epoch ELSE epoch + 1 END,
                  holder = $holder, expires_ms = $expires
                WHERE holder = $holder OR expires_ms <= $now
                """, cancellationToken,
                ("$name", name), ("$holder", holder), ("$now", now.ToUnixTimeMilliseconds()), ("$expires", (now + ttl).ToUnixTimeMilliseconds()));
            return (await ReadLeaseAsync(connection, null, name, cancellationToken))!;
        }
        finally
        {
            ReleaseWriteLock();
        }
    }

    public Task ReleaseLeaseAsync(string name, string holder, CancellationToken cancellationToken) =>
        ExecuteLockedAsync("UPDATE leases SET expires_ms = MIN(expires_ms, $now) WHERE name = $name AND holder = $holder", cancellationToken,
            ("$name", name), ("$holder", holder), ("$now", _time.GetUtcNow().ToUnixTimeMilliseconds()));

    public async Task<IReadOnlyList<LeaderLease>> ListLeasesAsync(string prefix, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(prefix);
        await using var connection = await OpenAsync(cancellationToken);
        await using var command = Command(connection, null, "SELECT name, holder, epoch, expires_ms FROM leases WHERE substr(name, 1, length($prefix)) = $prefix ORDER BY name", ("$prefix", prefix));
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        var leases = new List<LeaderLease>();
        while (await reader.ReadAsync(cancellationToken))
        {
            leases.Add(new LeaderLease(reader.GetString(0), reader.GetString(1), reader.GetInt64(2), DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(3))));
        }

        return leases;
    }

    public Task<int> DeleteLeasesAsync(string prefix, DateTimeOffset expiredBefore, CancellationToken cancellationToken) =>
        ExecuteLockedAsync("DELETE FROM leases WHERE substr(name, 1, length($prefix)) = $prefix AND expires_ms < $before", cancellationToken,
            ("$prefix", prefix), ("$before", expiredBefore.ToUnixTimeMilliseconds()));

    private static async Task<LeaderLease?> ReadLeaseAsync(SqliteConnection connection, SqliteTransaction? transaction, string name, CancellationToken cancellationToken)
    {
        await using var command = Command(connection, transaction, "SELECT holder, epoch, expires_ms FROM leases WHERE name = $name", ("$name", name));
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        return await reader.ReadAsync(cancellationToken)
            ? new LeaderLease(name, reader.GetString(0), reader.GetInt64(1), DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(2)))
            : null;
    }

    /// <summary>Inside a write transaction: throws unless the fence's lease is still at its epoch.</summary>
    private static async Task CheckFenceAsync(SqliteConnection connection, SqliteTransaction transaction, Fence? fence, CancellationToken cancellationToken)
    {
        if (fence is not null && await ReadLeaseAsync(connection, transaction, fence.Lease, cancellationToken) is var lease && lease?.Epoch != fence.Epoch)
        {
            throw fence.Refusal(lease?.Epoch ?? 0);
        }
    }
}
