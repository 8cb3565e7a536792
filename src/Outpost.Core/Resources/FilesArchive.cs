using System.Formats.Tar;

namespace Outpost.Core.Resources;

/// <summary>
/// The content of an app's spec.files: a directory packed as a ustar archive of regular files
/// and directories only (no links or devices, so unpacking never writes through anything it
/// did not create). Packing is reproducible: entries sorted, owner root, times zero, modes
/// 0644/0755, so the same directory always has the same digest.
/// </summary>
public static class FilesArchive
{
    /// <summary>The most entries one archive may hold.</summary>
    public const int MaxEntries = 100_000;

    /// <summary>Packs <paramref name="directory"/>; throws <see cref="InvalidDataException"/> naming what cannot be shipped.</summary>
    public static byte[] Pack(string directory)
    {
        ArgumentNullException.ThrowIfNull(directory);
        if (!Directory.Exists(directory))
        {
            throw new InvalidDataException($"'{directory}' is not a directory");
        }

        var entries = new List<(string Name, string Full, bool IsDirectory)>();
        Collect(directory, "", entries);
        if (entries.Count > MaxEntries)
        {
            throw new InvalidDataException($"'{directory}' holds {entries.Count} entries: at most {MaxEntries}");
        }

        using var output = new MemoryStream();
        using (var writer = new TarWriter(output, TarEntryFormat.Ustar, leaveOpen: true))
        {
            foreach (var (name, full, isDirectory) in entries.OrderBy(e => e.Name, StringComparer.Ordinal))
            {
                if (System.Text.Encoding.UTF8.GetByteCount(name) > 255)
                {
                    throw new InvalidDataException($"'{name}': paths in spec.files are limited to 255 bytes");
                }

                var entry = new UstarTarEntry(isDirectory ? TarEntryType.Directory : TarEntryType.RegularFile, isDirectory ? name + "/" : name)
                {
                    ModificationTime = DateTimeOffset.UnixEpoch,
                    Uid = 0,
                    Gid = 0,
                    Mode = isDirectory || IsExecutable(full) ? (UnixFileMode)0x1ED : (UnixFileMode)0x1A4,
                };
                using var content = isDirectory ? null : File.OpenRead(full);
                if (content is not null)
                {
                    entry.DataStream = content;
                }

                writer.WriteEntry(entry);
            }
        }

        return output.ToArray();
    }

    private static void Collect(string full, string relative, List<(string, string, bool)> entries)
    {
        foreach (var info in new DirectoryInfo(full).EnumerateFileSystemInfos())
        {
            var name = relative.Length == 0 ? info.Name : $"{relative}/{info.Name}";
            if (info.LinkTarget is not null)
            {
                throw new InvalidDataException($"'{name}' is a symbolic link: spec.files ships regular files and directories only");
            }

            if (info is DirectoryInfo)
            {
                entries.Add((name, info.FullName, true));
                Collect(info.FullName, name, entries);
            }
            else
            {
                entries.Add((name, info.FullName, false));
            }
        }
    }

    private static bool IsExecutable(string path) => OperatingSystem.IsWindows() || (File.GetUnixFileMode(path) & UnixFileMode.UserExecute) != 0;

    /// <summary>What is wrong with an archive (empty when it can be unpacked as spec.files content).</summary>
    public static IReadOnlyList<string> Validate(ReadOnlyMemory<byte> archive)
    {
        var problems = new List<string>();
        try
        {
            Read(archive, (name, entry) =>
            {
                if (problems.Count < 10 && Problem(name, entry) is { } problem)
                {
                    problems.Add(problem);
                }
            });
        }
        catch (Exception e) when (e is InvalidDataException or FormatException or EndOfStreamException)
        {
            problems.Add($"not a tar archive: {e.Message}");
        }

        return problems;
    }

    /// <summary>Unpacks a valid archive into <paramref name="target"/> (which must not exist), building it aside first so a failure leaves nothing.</summary>
    public static void Extract(ReadOnlyMemory<byte> archive, string target)
    {
        ArgumentNullException.ThrowIfNull(target);
        var problems = Validate(archive);
        if (problems.Count > 0)
        {
            throw new InvalidDataException(string.Join("; ", problems));
        }

        var aside = $"{target}.{Environment.ProcessId}.partial";
        if (Directory.Exists(aside))
        {
            Directory.Delete(aside, recursive: true);
        }

        Directory.CreateDirectory(aside);
        try
        {
            Read(archive, (name, entry) =>
            {
                var path = Path.Combine(aside, name.TrimEnd('/'));
                if (entry.EntryType == TarEntryType.Directory)
                {
                    Directory.CreateDirectory(path);
                    return;
                }

                Directory.CreateDirectory(Path.GetDirectoryName(path)!);
                using var file = new FileStream(path, FileMode.CreateNew, FileAccess.Write);
                entry.DataStream?.CopyTo(file);
            });
            Directory.Move(aside, target);
        }
        catch
        {
            Directory.Delete(aside, recursive: true);
            throw;
        }
    }

    private static void Read(ReadOnlyMemory<byte> archive, Action<string, TarEntry> visit)
    {
        using var stream = new MemoryStream(archive.ToArray(), writable: false);
        using var reader = new TarReader(stream);
        var count = 0;
        while (reader.GetNextEntry() is { } entry)
        {
            if (++count > MaxEntries)
            {
                throw new InvalidDataException($"more than {MaxEntries} entries");
            }

            visit(entry.Name, entry);
        }
    }

    private static string? Problem(string name, TarEntry entry)
    {
        if (entry.EntryType is not (TarEntryType.Directory or TarEntryType.RegularFile or TarEntryType.V7RegularFile))
        {
            return $"'{name}' is a {entry.EntryType} entry: spec.files holds regular files and directories only";
        }

        var parts = name.TrimEnd('/').Split('/');
        if (name.Length == 0 || name.StartsWith('/') || name.Contains('\0', StringComparison.Ordinal) || parts.Any(p => p is "" or "." or ".."))
        {
            return $"'{name}' is not a relative path inside the archive";
        }

        return null;
    }
}
