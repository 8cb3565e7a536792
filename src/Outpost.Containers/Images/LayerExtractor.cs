using System.Formats.Tar;
using System.IO.Compression;

namespace Outpost.Containers.Images;

/// <summary>
/// Applies an image layer (a tar, maybe gzipped) onto a root filesystem directory, as the OCI
/// image spec describes: entries replace what lower layers left, <c>.wh.NAME</c> deletes NAME,
/// <c>.wh..wh..opq</c> empties a directory of what lower layers put there.
/// Nothing it writes can land outside the root: every path is resolved inside it one component
/// at a time, never through the host's view of a symlink. An entry that names a path above the
/// root (<c>../</c>), that goes through a symlink pointing outside the root (absolute, or
/// climbing out with <c>..</c>), a hard link to anything but a file in the root, or a device
/// node, refuses the whole layer with an <see cref="ImageException"/> naming the entry.
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public static class LayerExtractor
{
    private const string WhiteoutPrefix = ".wh.";
    private const string OpaqueWhiteout = ".wh..wh..opq";
    private const int MaxSymlinkHops = 40;

    /// <summary>Applies the layer read from <paramref name="layer"/> onto <paramref name="root"/>.</summary>
    public static void Apply(Stream layer, LayerCompression compression, string root)
    {
        ArgumentNullException.ThrowIfNull(layer);
        ArgumentException.ThrowIfNullOrEmpty(root);
        root = Path.GetFullPath(root);
        Directory.CreateDirectory(root);
        using var input = compression == LayerCompression.Gzip ? new GZipStream(layer, CompressionMode.Decompress, leaveOpen: true) : layer;
        var created = new HashSet<string>(StringComparer.Ordinal);
        var owners = new List<(string Path, TarEntry Entry)>();
        try
        {
            using var reader = new TarReader(input, leaveOpen: true);
            while (reader.GetNextEntry(copyData: false) is { } entry)
            {
                ApplyEntry(root, entry, created, owners);
            }
        }
        catch (Exception e) when (e is InvalidDataException or FormatException or EndOfStreamException)
        {
            throw new ImageException($"the layer is not a valid tar{(compression == LayerCompression.Gzip ? "+gzip" : "")} stream: {e.Message}", e);
        }

        // Directories last: their modes may forbid writing into them, and entries go in first.
        foreach (var (path, entry) in owners)
        {
            Native.ChangeOwner(path, entry.Uid, entry.Gid);
            File.SetUnixFileMode(path, entry.Mode);
        }
    }

    private static void ApplyEntry(string root, TarEntry entry, HashSet<string> created, List<(string, TarEntry)> directories)
    {
        if (entry.EntryType is TarEntryType.GlobalExtendedAttributes or TarEntryType.ExtendedAttributes)
        {
            return;
        }

        var parts = Split(entry.Name, entry.Name);
        if (parts.Length == 0)
        {
            if (entry.EntryType == TarEntryType.Directory)
            {
                return; // "./": the root itself
            }

            throw new ImageException($"layer entry '{entry.Name}' has an empty path");
        }

        var name = parts[^1];
        var parent = ResolveParent(root, parts, entry.Name);
        var relative = string.Join('/', parts);
        if (name == OpaqueWhiteout)
        {
            var directoryRelative = string.Join('/', parts[..^1]);
            foreach (var child in Directory.EnumerateFileSystemEntries(parent))
            {
                var childRelative = directoryRelative.Length == 0 ? Path.GetFileName(child) : directoryRelative + "/" + Path.GetFileName(child);
                if (!created.Contains(childRelative))
                {
                    Remove(child);
                }
            }

            return;
        }

        if (name.StartsWith(WhiteoutPrefix, StringComparison.Ordinal))
        {
            var hidden = name[WhiteoutPrefix.Length..];
            if (hidden is "" or "." or "..")
            {
                throw new ImageException($"layer entry '{entry.Name}' is a whiteout of nothing");
            }

            Remove(Path.Combine(parent, hidden));
            return;
        }

        var target = Path.Combine(parent, name);
        switch (entry.EntryType)
        {
            case TarEntryType.Directory:
                if (new FileInfo(target).LinkTarget is not null || File.Exists(target))
                {
                    Remove(target);
                }

                Directory.CreateDirectory(target);
                directories.Add((target, entry));
                break;

            case TarEntryType.RegularFile or TarEntryType.V7RegularFile or TarEntryType.ContiguousFile:
                Remove(target);
                using (var file = new FileStream(target, new FileStreamOptions
                {
                    Mode = FileMode.CreateNew,
                    Access = FileAccess.Write,
                    UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite,
                }))
                {
                    entry.DataStream?.CopyTo(file);
                }

                Native.ChangeOwner(target, entry.Uid, entry.Gid);
                File.SetUnixFileMode(target, entry.Mode);
                File.SetLastWriteTimeUtc(target, entry.ModificationTime.UtcDateTime);
                break;

            case TarEntryType.SymbolicLink:
                // Stored as written: inside the container it resolves against the container's root.
                // Extraction itself never follows it to a place outside (see ResolveParent).
                Remove(target);
                File.CreateSymbolicLink(target, entry.LinkName);
                Native.ChangeOwner(target, entry.Uid, entry.Gid, followLinks: false);
                break;

            case TarEntryType.HardLink:
            {
                var linkParts = Split(entry.LinkName, entry.Name);
                if (linkParts.Length == 0)
                {
                    throw new ImageException($"layer entry '{entry.Name}' is a hard link to the root");
                }

                var source = Path.Combine(ResolveParent(root, linkParts, entry.Name), linkParts[^1]);
                if (new FileInfo(source).LinkTarget is not null || !File.Exists(source))
                {
                    throw new ImageException($"layer entry '{entry.Name}' is a hard link to '{entry.LinkName}', which is not a regular file in the image");
                }

                Remove(target);
                Native.HardLink(source, target);
                break;
            }

            case TarEntryType.CharacterDevice or TarEntryType.BlockDevice:
                throw new ImageException($"layer entry '{entry.Name}' is a device node ({entry.EntryType}); images may not carry devices (the runtime provides /dev)");

            case TarEntryType.Fifo:
                throw new ImageException($"layer entry '{entry.Name}' is a FIFO, which Outpost does not unpack");

            default:
                throw new ImageException($"layer entry '{entry.Name}' has unsupported type {entry.EntryType}");
        }

        created.Add(relative);
    }

    /// <summary>The path's components, with "." and empty ones dropped; ".." anywhere refuses the entry.</summary>
    private static string[] Split(string path, string entryName)
    {
        if (path.Contains('\0', StringComparison.Ordinal))
        {
            throw new ImageException($"layer entry '{entryName}' has a NUL in its path");
        }

        var parts = path.Split('/', StringSplitOptions.RemoveEmptyEntries).Where(p => p != ".").ToArray();
        if (parts.Contains(".."))
        {
            throw new ImageException($"layer entry '{entryName}' climbs out of the image's root with '..' ('{path}')");
        }

        return parts;
    }

    /// <summary>
    /// The host directory that holds the last of <paramref name="parts"/>, inside <paramref name="root"/>:
    /// missing directories are created; a symlink on the way is followed only while it stays in the root.
    /// </summary>
    private static string ResolveParent(string root, string[] parts, string entryName)
    {
        var pending = new Queue<string>(parts[..^1]);
        var walked = new List<string>();
        var current = root;
        var hops = 0;
        while (pending.TryDequeue(out var part))
        {
            var candidate = Path.Combine(current, part);
            if (new FileInfo(candidate).LinkTarget is { } link)
            {
                var via = string.Join('/', walked.Append(part));
                if (++hops > MaxSymlinkHops)
                {
                    throw new ImageException($"layer entry '{entryName}' goes through more than {MaxSymlinkHops} symlinks (a loop at '{via}'?)");
                }

                if (link.StartsWith('/'))
                {
                    throw new ImageException($"layer entry '{entryName}' goes through symlink '{via}' -> '{link}', an absolute path that would leave the image's root during extraction");
                }

                // Resolve the link's target against the directory holding it, then walk again from the root.
                var resolved = new List<string>(walked);
                foreach (var step in link.Split('/', StringSplitOptions.RemoveEmptyEntries))
                {
                    if (step == ".")
                    {
                        continue;
                    }

                    if (step == "..")
                    {
                        if (resolved.Count == 0)
                        {
                            throw new ImageException($"layer entry '{entryName}' goes through symlink '{via}' -> '{link}', which points above the image's root");
                        }

                        resolved.RemoveAt(resolved.Count - 1);
                        continue;
                    }

                    resolved.Add(step);
                }

                pending = new Queue<string>(resolved.Concat(pending));
                walked.Clear();
                current = root;
                continue;
            }

            if (File.Exists(candidate))
            {
                throw new ImageException($"layer entry '{entryName}' needs '{string.Join('/', walked.Append(part))}' to be a directory, but it is a file");
            }

            Directory.CreateDirectory(candidate);
            walked.Add(part);
            current = candidate;
        }

        return current;
    }

    /// <summary>Removes a file, link or directory tree without following links; nothing if absent.</summary>
    private static void Remove(string path)
    {
        var info = new FileInfo(path);
        if (info.LinkTarget is not null || info.Exists)
        {
            info.Delete();
        }
        else if (Directory.Exists(path))
        {
            Directory.Delete(path, recursive: true);
        }
    }
}
