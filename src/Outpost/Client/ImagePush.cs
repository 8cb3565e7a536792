using System.Formats.Tar;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Outpost.Containers.Images;
using Outpost.Core.Manifests;
using Outpost.Core.Resources;

namespace Outpost.Client;

/// <summary>
/// `outpost push IMAGE.tar`: an OCI archive (an image layout in a tar, what `skopeo copy
/// oci-archive:` and `buildah push` write) or a Docker archive (`docker save`) pushed to the
/// server's registry over its distribution API, as skopeo would: each blob the registry lacks
/// uploaded once (HEAD first), then the manifest under its tag. A Docker archive's layers go as
/// uncompressed OCI layers under a manifest made here.
/// </summary>
internal static class ImagePush
{
    /// <summary>True when the file is a tar (a ustar magic at 257), not a module.</summary>
    public static bool IsArchive(string file)
    {
        using var stream = File.OpenRead(file);
        var header = new byte[262];
        return stream.Read(header) == header.Length && header.AsSpan(257, 5).SequenceEqual("ustar"u8);
    }

    /// <summary>Pushes the archive's image as <paramref name="reference"/> (NAME:TAG; for a Docker archive, default its first RepoTag); returns NAME:TAG@DIGEST.</summary>
    public static async Task<string> PushAsync(ApiClient client, string file, string? reference, CancellationToken ct)
    {
        var entries = ReadArchive(file);
        byte[] manifest;
        string mediaType;
        IReadOnlyList<string> blobs;
        if (entries.TryGetValue("index.json", out var indexBytes))
        {
            (manifest, mediaType, blobs, var tag) = FromLayout(entries, indexBytes);
            reference ??= tag is null ? null : tag.Contains(':', StringComparison.Ordinal) || tag.Contains('/', StringComparison.Ordinal) ? tag : null;
        }
        else if (entries.TryGetValue("manifest.json", out var dockerBytes))
        {
            (manifest, mediaType, blobs, var repoTag) = FromDockerArchive(entries, dockerBytes);
            reference ??= repoTag;
        }
        else
        {
            throw new ManifestException($"'{file}' is neither an OCI archive (index.json) nor a Docker archive (manifest.json)");
        }

        if (reference is null)
        {
            throw new ManifestException($"'{file}' does not say what to call its image: pass --image NAME:TAG");
        }

        var parsed = ImageReference.Parse(reference);
        if (parsed.Error is not null || parsed.Tag is null)
        {
            throw new ManifestException(parsed.Error is null ? $"--image {reference}: give a tag (NAME:TAG), not a digest" : $"--image {parsed.Error}");
        }

        var name = parsed.Repository;
        foreach (var digest in blobs.Distinct(StringComparer.Ordinal))
        {
            if (await client.ExistsAsync($"/v2/{name}/blobs/{digest}", ct))
            {
                continue;
            }

            var content = entries.TryGetValue(BlobPath(digest), out var bytes) ? bytes
                : throw new ManifestException($"'{file}' names blob {digest} but does not hold it");
            await client.SendBytesAsync(HttpMethod.Post, $"/v2/{name}/blobs/uploads/?digest={Uri.EscapeDataString(digest)}", content, "application/octet-stream", ct);
        }

        await client.SendBytesAsync(HttpMethod.Put, $"/v2/{name}/manifests/{parsed.Tag}", manifest, mediaType, ct);
        return $"{name}:{parsed.Tag}@{Digest.Compute(manifest)}";
    }

    private static string BlobPath(string digest) => "blobs/sha256/" + digest["sha256:".Length..];

    /// <summary>An OCI layout: its index's first manifest (an index of platforms is pushed whole).</summary>
    private static (byte[] Manifest, string MediaType, IReadOnlyList<string> Blobs, string? Tag) FromLayout(Dictionary<string, byte[]> entries, byte[] indexBytes)
    {
        var index = ImageManifest.Parse(indexBytes, MediaTypes.OciIndex);
        var top = index.Manifests.Count > 0 ? index.Manifests[0] : throw new ManifestException("the archive's index.json lists no image");
        var tag = (JsonNode.Parse(indexBytes)?["manifests"]?[0]?["annotations"] as JsonObject)?["org.opencontainers.image.ref.name"]?.GetValue<string>();
        var manifestBytes = Blob(entries, top.Digest);
        var manifest = ImageManifest.Parse(manifestBytes, top.MediaType);
        var blobs = new List<string>();
        if (manifest.IsIndex)
        {
            foreach (var child in manifest.Manifests)
            {
                var childManifest = ImageManifest.Parse(Blob(entries, child.Digest), child.MediaType);
                blobs.AddRange([childManifest.Config!.Digest, .. childManifest.Layers.Select(l => l.Digest), child.Digest]);
            }
        }
        else
        {
            blobs.AddRange([manifest.Config!.Digest, .. manifest.Layers.Select(l => l.Digest)]);
        }

        return (manifestBytes, manifest.MediaType, blobs, tag);
    }

    /// <summary>`docker save`: its config and layer tars, under an OCI manifest made here (layers uncompressed).</summary>
    private static (byte[] Manifest, string MediaType, IReadOnlyList<string> Blobs, string? RepoTag) FromDockerArchive(Dictionary<string, byte[]> entries, byte[] manifestJson)
    {
        JsonArray images;
        try
        {
            images = JsonNode.Parse(manifestJson) as JsonArray ?? throw new ManifestException("the archive's manifest.json is not a list");
        }
        catch (JsonException e)
        {
            throw new ManifestException($"the archive's manifest.json is not JSON: {e.Message}");
        }

        var image = images.FirstOrDefault() as JsonObject ?? throw new ManifestException("the archive's manifest.json lists no image");
        var configPath = (string?)image["Config"] ?? throw new ManifestException("the archive's manifest.json names no Config");
        var config = entries.GetValueOrDefault(configPath) ?? throw new ManifestException($"the archive does not hold its config '{configPath}'");
        var configDigest = Store(entries, config);
        var layers = new JsonArray();
        var blobs = new List<string> { configDigest };
        foreach (var layerPath in (image["Layers"] as JsonArray ?? []).Select(l => (string?)l))
        {
            var layer = entries.GetValueOrDefault(layerPath ?? "") ?? throw new ManifestException($"the archive does not hold its layer '{layerPath}'");
            var gzipped = layer.Length > 2 && layer[0] == 0x1f && layer[1] == 0x8b;
            var digest = Store(entries, layer);
            blobs.Add(digest);
            layers.Add((JsonNode)new JsonObject { ["mediaType"] = gzipped ? MediaTypes.OciLayerGzip : MediaTypes.OciLayer, ["digest"] = digest, ["size"] = layer.Length });
        }

        var manifest = Encoding.UTF8.GetBytes(new JsonObject
        {
            ["schemaVersion"] = 2,
            ["mediaType"] = MediaTypes.OciManifest,
            ["config"] = new JsonObject { ["mediaType"] = MediaTypes.OciConfig, ["digest"] = configDigest, ["size"] = config.Length },
            ["layers"] = layers,
        }.ToJsonString());
        return (manifest, MediaTypes.OciManifest, blobs, (image["RepoTags"] as JsonArray)?.FirstOrDefault()?.GetValue<string>());
    }

    private static string Store(Dictionary<string, byte[]> entries, byte[] content)
    {
        var digest = Digest.Compute(content);
        entries[BlobPath(digest)] = content;
        return digest;
    }

    private static byte[] Blob(Dictionary<string, byte[]> entries, string digest) =>
        entries.TryGetValue(BlobPath(digest), out var bytes) ? bytes : throw new ManifestException($"the archive names {digest} but does not hold it");

    /// <summary>The archive's regular files by path ("./" and leading "/" dropped); names that climb out are refused.</summary>
    private static Dictionary<string, byte[]> ReadArchive(string file)
    {
        var entries = new Dictionary<string, byte[]>(StringComparer.Ordinal);
        try
        {
            using var stream = File.OpenRead(file);
            using var reader = new TarReader(stream);
            while (reader.GetNextEntry() is { } entry)
            {
                if (entry.EntryType is not (TarEntryType.RegularFile or TarEntryType.V7RegularFile) || entry.DataStream is null)
                {
                    continue;
                }

                var name = string.Join('/', entry.Name.Split('/', StringSplitOptions.RemoveEmptyEntries).Where(p => p != "."));
                if (name.Split('/').Contains(".."))
                {
                    throw new ManifestException($"'{file}' holds an entry that climbs out of the archive: {entry.Name}");
                }

                using var content = new MemoryStream();
                entry.DataStream.CopyTo(content);
                entries[name] = content.ToArray();
            }
        }
        catch (InvalidDataException e)
        {
            throw new ManifestException($"'{file}' is not a valid tar archive: {e.Message}");
        }

        return entries;
    }
}
