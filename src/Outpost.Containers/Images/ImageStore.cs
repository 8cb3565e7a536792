using System.Security.Cryptography;
using Outpost.Core.Resources;

namespace Outpost.Containers.Images;

/// <summary>An image ready to run: its unpacked root filesystem (read-only from here on) and config.</summary>
public sealed record UnpackedImage(string ManifestDigest, string RootFs, ImageConfig Config);

/// <summary>
/// A node's images: blobs by digest in one shared cache (a layer that several images use is
/// stored, and fetched, once), and each image's layers applied into a root filesystem of its own,
/// kept while the image is in use. Every blob is verified against its digest before it is
/// kept; a root filesystem is built aside and renamed into place, so a failed or interrupted
/// unpack leaves nothing half-made.
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class ImageStore : IDisposable
{
    private readonly string _blobs;
    private readonly string _rootfs;
    private readonly string _scratch;
    private readonly SemaphoreSlim _unpacking = new(1, 1);

    public ImageStore(string directory)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        Directory = Path.GetFullPath(directory);
        _blobs = Path.Combine(Directory, "blobs", "sha256");
        _rootfs = Path.Combine(Directory, "rootfs");
        _scratch = Path.Combine(Directory, "tmp");
        System.IO.Directory.CreateDirectory(_blobs);
        System.IO.Directory.CreateDirectory(_rootfs);
        System.IO.Directory.CreateDirectory(_scratch);
    }

    public string Directory { get; }

    public void Dispose() => _unpacking.Dispose();

    public string BlobPath(string digest) => Path.Combine(_blobs, Hex(digest));

    public bool HasBlob(string digest) => File.Exists(BlobPath(digest));

    /// <summary>Where a blob being fetched collects its bytes; its length is where a resumed fetch starts.</summary>
    public string PartialPath(string digest) => Path.Combine(_scratch, Hex(digest) + ".partial");

    /// <summary>Stores a blob from a stream, verified against <paramref name="digest"/> (and <paramref name="size"/> when known).</summary>
    public async Task PutBlobAsync(Stream content, string digest, long? size = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(content);
        if (HasBlob(digest))
        {
            return;
        }

        var partial = Path.Combine(_scratch, $"{Hex(digest)}.{Guid.NewGuid():N}");
        try
        {
            await using (var file = new FileStream(partial, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16, useAsync: true))
            {
                await content.CopyToAsync(file, 1 << 16, cancellationToken).ConfigureAwait(false);
            }

            Commit(partial, digest, size);
        }
        finally
        {
            File.Delete(partial);
        }
    }

    /// <summary>Moves a fully fetched partial blob into the cache once its bytes hash to its digest; a mismatch deletes it.</summary>
    public void CommitPartial(string digest, long? size = null)
    {
        var partial = PartialPath(digest);
        try
        {
            Commit(partial, digest, size);
        }
        finally
        {
            File.Delete(partial);
        }
    }

    private void Commit(string file, string digest, long? size)
    {
        var actualSize = new FileInfo(file).Length;
        if (size is { } expected && actualSize != expected)
        {
            throw new ImageException($"blob {digest} is {actualSize} bytes, but its descriptor says {expected}");
        }

        string actual;
        using (var stream = File.OpenRead(file))
        {
            actual = "sha256:" + Convert.ToHexStringLower(SHA256.HashData(stream));
        }

        if (actual != digest)
        {
            throw new ImageException($"blob {digest} does not match its digest: its bytes hash to {actual}");
        }

        File.Move(file, BlobPath(digest), overwrite: true);
    }

    /// <summary>Reads a stored manifest (an index resolves to this node's platform) and its config.</summary>
    public (string ManifestDigest, ImageManifest Manifest, ImageConfig Config) Resolve(string digest, string? architecture = null)
    {
        architecture ??= ImageManifest.NodeArchitecture;
        var manifest = ImageManifest.Parse(ReadBlob(digest, "manifest"));
        if (manifest.IsIndex)
        {
            digest = manifest.SelectPlatform(architecture).Digest;
            manifest = ImageManifest.Parse(ReadBlob(digest, "manifest"));
            if (manifest.IsIndex)
            {
                throw new ImageException($"manifest {digest} is an index inside an index, which Outpost does not follow");
            }
        }

        var config = ImageConfig.Parse(ReadBlob(manifest.Config!.Digest, "config"));
        if (config.Os is { Length: > 0 } os && os != "linux")
        {
            throw new ImageException($"the image is for {os}/{config.Architecture}; nodes run linux images");
        }

        if (config.Architecture is { Length: > 0 } arch && arch != architecture)
        {
            throw new ImageException($"the image is for linux/{arch}, but this node is linux/{architecture}");
        }

        return (digest, manifest, config);
    }

    /// <summary>The blobs an image still needs on this node (a manifest must be stored first to know them).</summary>
    public IReadOnlyList<Descriptor> MissingLayers(ImageManifest manifest)
    {
        ArgumentNullException.ThrowIfNull(manifest);
        return [.. manifest.Layers.Append(manifest.Config!).Where(d => !HasBlob(d.Digest))];
    }

    /// <summary>The image's root filesystem, unpacked from its layers if this is the first time; every blob must be stored.</summary>
    public async Task<UnpackedImage> UnpackAsync(string digest, CancellationToken cancellationToken = default)
    {
        var (manifestDigest, manifest, config) = Resolve(digest);
        var rootfs = Path.Combine(_rootfs, Hex(manifestDigest));
        await _unpacking.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (System.IO.Directory.Exists(rootfs))
            {
                return new UnpackedImage(manifestDigest, rootfs, config);
            }

            if (MissingLayers(manifest) is { Count: > 0 } missing)
            {
                throw new ImageException($"image {manifestDigest} is missing {missing.Count} blob(s) on this node, first {missing[0].Digest}");
            }

            var building = Path.Combine(_scratch, $"rootfs-{Hex(manifestDigest)}.{Guid.NewGuid():N}");
            try
            {
                foreach (var layer in manifest.Layers)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    using var stream = new FileStream(BlobPath(layer.Digest), FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
                    try
                    {
                        LayerExtractor.Apply(stream, MediaTypes.Compression(layer.MediaType)!.Value, building);
                    }
                    catch (ImageException e)
                    {
                        throw new ImageException($"layer {layer.Digest}: {e.Message}", e);
                    }
                }

                MakeMountPoints(building);
                System.IO.Directory.Move(building, rootfs);
            }
            finally
            {
                if (System.IO.Directory.Exists(building))
                {
                    System.IO.Directory.Delete(building, recursive: true);
                }
            }

            return new UnpackedImage(manifestDigest, rootfs, config);
        }
        finally
        {
            _unpacking.Release();
        }
    }

    /// <summary>The directories and files the runtime mounts over: made now, as the root is read-only once running.</summary>
    private static void MakeMountPoints(string root)
    {
        foreach (var dir in Runtime.Bundle.MountPoints)
        {
            var path = Path.Combine(root, dir);
            if (new FileInfo(path).LinkTarget is null && !File.Exists(path))
            {
                System.IO.Directory.CreateDirectory(path);
            }
        }

        foreach (var file in Runtime.Bundle.MountedFiles)
        {
            var path = Path.Combine(root, file);
            if (new FileInfo(path).LinkTarget is null && !File.Exists(path) && System.IO.Directory.Exists(Path.GetDirectoryName(path)))
            {
                File.WriteAllBytes(path, []);
            }
        }
    }

    private byte[] ReadBlob(string digest, string what)
    {
        if (!Digest.IsValid(digest))
        {
            throw new ImageException($"'{digest}' is not a digest (sha256:<64 lowercase hex>)");
        }

        var path = BlobPath(digest);
        return File.Exists(path) ? File.ReadAllBytes(path) : throw new ImageException($"{what} {digest} is not stored on this node");
    }

    private static string Hex(string digest) => Digest.IsValid(digest) ? digest["sha256:".Length..]
        : throw new ImageException($"'{digest}' is not a digest (sha256:<64 lowercase hex>)");
}
