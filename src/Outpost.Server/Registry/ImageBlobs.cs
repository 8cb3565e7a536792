using System.Collections.Concurrent;
using Outpost.Containers.Images;
using Outpost.Core.Store;

namespace Outpost.Server.Registry;

/// <summary>
/// Every blob an image is made of (its manifest, an index's manifests, configs, layers), read from
/// the registry's manifests: what a node running the image may fetch. Manifests never change (their
/// name is their hash), so each is read once.
/// </summary>
public sealed class ImageBlobs(IControlPlaneStore store)
{
    private readonly ConcurrentDictionary<string, IReadOnlySet<string>> _known = new(StringComparer.Ordinal);

    public async Task<IReadOnlySet<string>> OfAsync(string manifestDigest, CancellationToken cancellationToken)
    {
        if (_known.TryGetValue(manifestDigest, out var blobs))
        {
            return blobs;
        }

        var all = new HashSet<string>(StringComparer.Ordinal);
        await AddAsync(manifestDigest, all, depth: 0, cancellationToken);
        _known[manifestDigest] = all;
        return all;
    }

    private async Task AddAsync(string digest, HashSet<string> all, int depth, CancellationToken cancellationToken)
    {
        if (!all.Add(digest) || depth > 1 || await RegistryEndpoints.ReadBlobAsync(store, digest, RegistryEndpoints.MaxManifestBytes, cancellationToken) is not { } bytes)
        {
            return;
        }

        ImageManifest manifest;
        try
        {
            manifest = ImageManifest.Parse(bytes);
        }
        catch (ImageException)
        {
            return;
        }

        foreach (var child in manifest.Manifests)
        {
            await AddAsync(child.Digest, all, depth + 1, cancellationToken);
        }

        if (manifest.Config is { } config)
        {
            all.Add(config.Digest);
        }

        foreach (var layer in manifest.Layers)
        {
            all.Add(layer.Digest);
        }
    }
}
