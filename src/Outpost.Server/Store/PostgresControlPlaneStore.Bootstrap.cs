namespace Outpost.Server.Store;

/// <summary>The bootstrap set that replicas share (see <see cref="Security.ServerBootstrap"/>): opaque, sealed bytes by name.</summary>
public sealed partial class PostgresControlPlaneStore
{
    /// <summary>
    /// The shared bootstrap set: the one stored, or, when there is none yet, the one
    /// <paramref name="create"/> makes, stored whole (all its entries in one transaction). Replicas
    /// that start at once take turns under a lock, and all end with the first one's set. Migrates
    /// the schema first, so it can run before <see cref="InitializeAsync"/>.
    /// </summary>
    public async Task<IReadOnlyDictionary<string, byte[]>> ShareBootstrapAsync(Func<IReadOnlyDictionary<string, byte[]>> create, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(create);
        await MigrateAsync(cancellationToken);
        await using var connection = await ConnectAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        await LockAsync(connection, LockKey.Bootstrap, cancellationToken);
        var stored = new Dictionary<string, byte[]>(StringComparer.Ordinal);
        await using (var command = Command(connection, "SELECT name, sealed FROM bootstrap"))
        await using (var reader = await command.ExecuteReaderAsync(cancellationToken))
        {
            while (await reader.ReadAsync(cancellationToken))
            {
                stored[reader.GetString(0)] = reader.GetFieldValue<byte[]>(1);
            }
        }

        if (stored.Count > 0)
        {
            return stored;
        }

        var created = create();
        foreach (var (name, value) in created)
        {
            await ExecuteAsync(connection, "INSERT INTO bootstrap (name, sealed) VALUES (@name, @sealed)", cancellationToken, ("name", name), ("sealed", value));
        }

        await transaction.CommitAsync(cancellationToken);
        return created;
    }
}
