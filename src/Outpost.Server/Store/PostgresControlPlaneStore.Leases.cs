using Npgsql;
using Outpost.Core.Store;

namespace Outpost.Server.Store;

/// <summary>
/// Leader leases (see <see cref="IControlPlaneStore.AcquireLeaseAsync"/>). The upsert takes the
/// row's lock, so two replicas asking at once are granted one after the other; times are each
/// server's clock, so replicas need clocks in step (NTP) to well within a lease.
/// </summary>
public sealed partial class PostgresControlPlaneStore
{
    public async Task<LeaderLease> AcquireLeaseAsync(string name, string holder, TimeSpan ttl, CancellationToken cancellationToken)
    {
        var now = _time.GetUtcNow();
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken);
        await using (var command = Command(connection, """
            INSERT INTO leases (name, holder, epoch, expires_ms) VALUES (@name, @holder, 1, @expires)
            ON CONFLICT (name) DO UPDATE SET
              epoch = CASE WHEN leases.holder = @holder AND leases.expires_ms > @now THEN leases.epoch ELSE leases.epoch + 1 END,
              holder = @holder, expires_ms = @expires
            WHERE leases.holder = @holder OR leases.expires_ms <= @now
            RETURNING holder, epoch, expires_ms
            """, ("name", name), ("holder", holder), ("now", now.ToUnixTimeMilliseconds()), ("expires", (now + ttl).ToUnixTimeMilliseconds())))
        await using (var reader = await command.ExecuteReaderAsync(cancellationToken))
        {
            if (await reader.ReadAsync(cancellationToken))
            {
                return new LeaderLease(name, reader.GetString(0), reader.GetInt64(1), DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(2)));
            }
        }

        // Refused: someone else holds it (and the row exists, or the insert would have been granted).
        return (await ReadLeaseAsync(connection, name, share: false, cancellationToken))!;
    }

    public async Task ReleaseLeaseAsync(string name, string holder, CancellationToken cancellationToken)
    {
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken);
        await ExecuteAsync(connection, "UPDATE leases SET expires_ms = LEAST(expires_ms, @now) WHERE name = @name AND holder = @holder", cancellationToken,
            ("name", name), ("holder", holder), ("now", _time.GetUtcNow().ToUnixTimeMilliseconds()));
    }

    public async Task<IReadOnlyList<LeaderLease>> ListLeasesAsync(string prefix, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(prefix);
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken);
        await using var command = Command(connection, "SELECT name, holder, epoch, expires_ms FROM leases WHERE left(name, length(@prefix)) = @prefix ORDER BY name COLLATE \"C\"", ("prefix", prefix));
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        var leases = new List<LeaderLease>();
        while (await reader.ReadAsync(cancellationToken))
        {
            leases.Add(new LeaderLease(reader.GetString(0), reader.GetString(1), reader.GetInt64(2), DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(3))));
        }

        return leases;
    }

    public async Task<int> DeleteLeasesAsync(string prefix, DateTimeOffset expiredBefore, CancellationToken cancellationToken)
    {
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken);
        return await ExecuteAsync(connection, "DELETE FROM leases WHERE left(name, length(@prefix)) = @prefix AND expires_ms < @before", cancellationToken,
            ("prefix", prefix), ("before", expiredBefore.ToUnixTimeMilliseconds()));
    }

    private static async Task<LeaderLease?> ReadLeaseAsync(NpgsqlConnection connection, string name, bool share, CancellationToken cancellationToken)
    {
        await using var command = Command(connection, $"SELECT holder, epoch, expires_ms FROM leases WHERE name = @name{(share ? " FOR SHARE" : "")}", ("name", name));
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        return await reader.ReadAsync(cancellationToken)
            ? new LeaderLease(name, reader.GetString(0), reader.GetInt64(1), DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(2)))
            : null;
    }

    /// <summary>
    /// Inside a write transaction: throws unless the fence's lease is still at its epoch. The row
    /// stays share-locked until the commit, so no new holder is granted the lease in between.
    /// </summary>
    private static async Task CheckFenceAsync(NpgsqlConnection connection, Fence? fence, CancellationToken cancellationToken)
    {
        if (fence is not null && await ReadLeaseAsync(connection, fence.Lease, share: true, cancellationToken) is var lease && lease?.Epoch != fence.Epoch)
        {
            throw fence.Refusal(lease?.Epoch ?? 0);
        }
    }
}
