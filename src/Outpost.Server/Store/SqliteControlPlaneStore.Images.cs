using Outpost.Core.Store;

namespace Outpost.Server.Store;

/// <summary>The registry's tags (see <see cref="IControlPlaneStore.SetImageTagAsync"/>); manifests and layers are blobs.</summary>
public sealed partial class SqliteControlPlaneStore
{
    public Task SetImageTagAsync(string repository, string tag, string digest, CancellationToken cancellationToken) =>
        ExecuteLockedAsync("""
            INSERT INTO image_tags (repository, tag, digest, updated_ms) VALUES ($repository, $tag, $digest, $now)
            ON CONFLICT (repository, tag) DO UPDATE SET digest = $digest, updated_ms = $now
            """, cancellationToken,
            ("$repository", repository), ("$tag", tag), ("$digest", digest), ("$now", _time.GetUtcNow().ToUnixTimeMilliseconds()));

    public async Task<string?> GetImageTagAsync(string repository, string tag, CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync(cancellationToken);
        await using var command = Command(connection, null, "SELECT digest FROM image_tags WHERE repository = $repository AND tag = $tag",
            ("$repository", repository), ("$tag", tag));
        return await command.ExecuteScalarAsync(cancellationToken) as string;
    }

    public async Task<IReadOnlyList<ImageTag>> ListImageTagsAsync(string? repository, CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync(cancellationToken);
        await using var command = Command(connection, null,
            "SELECT repository, tag, digest, updated_ms FROM image_tags WHERE $repository IS NULL OR repository = $repository ORDER BY repository, tag",
            ("$repository", repository));
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        var tags = new List<ImageTag>();
        while (await reader.ReadAsync(cancellationToken))
        {
            tags.Add(new ImageTag(reader.GetString(0), reader.GetString(1), reader.GetString(2), DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(3))));
        }

        return tags;
    }

    public async Task<bool> DeleteImageTagAsync(string repository, string tag, CancellationToken cancellationToken) =>
        await ExecuteLockedAsync("DELETE FROM image_tags WHERE repository = $repository AND tag = $tag", cancellationToken,
            ("$repository", repository), ("$tag", tag)) > 0;
}
