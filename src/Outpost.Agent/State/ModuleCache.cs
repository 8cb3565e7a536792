using System.Security.Cryptography;
using Outpost.Core.Resources;

namespace Outpost.Agent.State;

/// <summary>
/// Modules on local disk, content-addressed. A download lands in a <c>.part</c> file that a
/// retry resumes from, and becomes visible only once its digest is verified.
/// </summary>
public sealed class ModuleCache
{
    private readonly string _dir;

    public ModuleCache(string dir)
    {
        _dir = dir;
        Directory.CreateDirectory(dir);
    }

    public string PathFor(string digest) => Path.Combine(_dir, Digest.ToFileName(digest) + ".wasm");

    public bool Has(string digest) => File.Exists(PathFor(digest));

    public byte[] Read(string digest) => File.ReadAllBytes(PathFor(digest));

    /// <summary>Whether the cached bytes are a component (read from their 8-byte preamble), not a core module.</summary>
    public bool IsComponent(string digest)
    {
        Span<byte> preamble = stackalloc byte[8];
        using var file = File.OpenRead(PathFor(digest));
        return file.ReadAtLeast(preamble, 8, throwOnEndOfStream: false) == 8 && Wasm.Components.ComponentHost.IsComponent(preamble);
    }

    public string PartialPathFor(string digest) => PathFor(digest) + ".part";

    /// <summary>Bytes already downloaded for a digest, where a resumed fetch starts.</summary>
    public long PartialLength(string digest)
    {
        var part = new FileInfo(PartialPathFor(digest));
        return part.Exists ? part.Length : 0;
    }

    /// <summary>Verifies the partial file against its digest and publishes it; a mismatch discards it.</summary>
    public void Complete(string digest)
    {
        var part = PartialPathFor(digest);
        using (var stream = File.OpenRead(part))
        {
            var actual = "sha256:" + Convert.ToHexStringLower(SHA256.HashData(stream));
            if (actual != digest)
            {
                stream.Dispose();
                File.Delete(part);
                throw new InvalidDataException($"downloaded module does not match its digest: expected {digest}, got {actual}");
            }
        }

        File.Move(part, PathFor(digest), overwrite: true);
    }
}
