using System.IO.Compression;
using System.Reflection;
using System.Runtime.InteropServices;
using System.Security.Cryptography;

namespace Outpost.Native;

/// <summary>
/// The native libraries the release binary carries inside itself (libwasmtime.so and SQLite's
/// libe_sqlite3.so, stripped and gzipped at build time, each with its SHA-256), extracted on first
/// use into a content-addressed folder, <c>~/.outpost/lib/HASH/</c> (or <c>$OUTPOST_LIB_DIR/HASH/</c>),
/// as k3s unpacks its bundled binaries. A load checks the file on disk against the hash the binary
/// carries: a copy that was edited, truncated or half-written is extracted again, and that is said
/// on stderr. Hashing libwasmtime.so (~24 MB) costs ~12 ms of every start, so a file that matched is
/// stamped with its identity on disk (<see cref="FileIdentity"/>), and a start that finds the file
/// just as it was stamped skips the hash; any write, truncation or replacement changes that
/// identity, so an edited copy is still hashed and repaired. A build without them (the JIT build run by `dotnet outpost.dll`) loads the
/// libraries from beside the assemblies as usual.
/// </summary>
internal static class EmbeddedLibraries
{
    private const string Prefix = "native/";

    private static readonly Lock Gate = new();
    private static readonly Dictionary<string, nint> Loaded = new(StringComparer.Ordinal);

    /// <summary>Routes the P/Invokes of Wasmtime and SQLite to the embedded copies, when this binary has them.</summary>
    public static void Register()
    {
        var self = typeof(EmbeddedLibraries).Assembly;
        foreach (var (file, assembly, name) in new[]
        {
            ("libwasmtime.so", typeof(Wasmtime.Engine).Assembly, "wasmtime"),
            ("libwasmtime.so", typeof(Outpost.Wasm.Components.ComponentHost).Assembly, "wasmtime"), // the component host's own bindings
            ("libe_sqlite3.so", typeof(SQLitePCL.SQLite3Provider_e_sqlite3).Assembly, "e_sqlite3"),
        })
        {
            if (self.GetManifestResourceInfo(Prefix + file + ".gz") is not null)
            {
                NativeLibrary.SetDllImportResolver(assembly, (library, _, _) => library.Contains(name, StringComparison.Ordinal) ? Load(file) : 0);
            }
        }
    }

    /// <summary>The folder extracted libraries go under: OUTPOST_LIB_DIR, else ~/.outpost/lib, else /var/lib/outpost/lib.</summary>
    public static string Root =>
        Environment.GetEnvironmentVariable("OUTPOST_LIB_DIR") is { Length: > 0 } dir ? dir
            : Environment.GetFolderPath(Environment.SpecialFolder.UserProfile) is { Length: > 0 } home ? Path.Combine(home, ".outpost", "lib")
            : "/var/lib/outpost/lib";

    private static nint Load(string file)
    {
        lock (Gate)
        {
            if (!Loaded.TryGetValue(file, out var handle))
            {
                handle = NativeLibrary.Load(Extract(file, Root));
                Loaded[file] = handle;
            }

            return handle;
        }
    }

    /// <summary>
    /// The path of <paramref name="file"/> under <paramref name="root"/>/HASH/, written there if
    /// missing or if what is there does not hash to HASH. Written to a temporary file and renamed
    /// into place, so processes starting together never load a half-written library.
    /// </summary>
    internal static string Extract(string file, string root)
    {
        var expected = ExpectedHash(file);
        var dir = Path.Combine(root, expected[..16]);
        var path = Path.Combine(dir, file);
        var stamp = path + ".verified";
        if (File.Exists(path))
        {
            var identity = FileIdentity.Of(path);
            if (identity is not null && ReadStamp(stamp) == identity.Key)
            {
                return path;
            }

            if (HashOf(path) == expected)
            {
                if (identity is not null && identity.SettledFor(TimeSpan.FromSeconds(2)))
                {
                    WriteStamp(stamp, identity.Key);
                }

                return path;
            }

            Console.Error.WriteLine($"outpost: {path} does not match its SHA-256 (edited or truncated?): extracting it again");
        }

        Directory.CreateDirectory(dir);
        var temporary = $"{path}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp";
        try
        {
            using (var source = new GZipStream(Resource(file + ".gz"), CompressionMode.Decompress))
            using (var target = new FileStream(temporary, FileMode.CreateNew, FileAccess.Write))
            {
                source.CopyTo(target);
            }

            if (HashOf(temporary) != expected)
            {
                throw new InvalidDataException($"the {file} inside this outpost binary does not match its own SHA-256: the binary is damaged");
            }

            File.Delete(stamp);
            File.Move(temporary, path, overwrite: true);
        }
        finally
        {
            File.Delete(temporary);
        }

        return path;
    }

    private static string? ReadStamp(string stamp)
    {
        try
        {
            return File.ReadAllText(stamp);
        }
        catch (IOException)
        {
            return null;
        }
        catch (UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>Best effort: a folder this user cannot write still loads, hashing at every start.</summary>
    private static void WriteStamp(string stamp, string key)
    {
        var temporary = $"{stamp}.{Environment.ProcessId}.tmp";
        try
        {
            File.WriteAllText(temporary, key);
            File.Move(temporary, stamp, overwrite: true);
        }
        catch (IOException)
        {
            File.Delete(temporary);
        }
        catch (UnauthorizedAccessException)
        {
        }
    }

    private static string ExpectedHash(string file)
    {
        using var reader = new StreamReader(Resource(file + ".sha256"));
        return reader.ReadToEnd().Trim().ToLowerInvariant();
    }

    private static Stream Resource(string name) =>
        typeof(EmbeddedLibraries).Assembly.GetManifestResourceStream(Prefix + name)
            ?? throw new FileNotFoundException($"this outpost binary carries no {name}", Prefix + name);

    private static string HashOf(string path)
    {
        // In 1 MiB reads: libwasmtime.so is ~24 MB, and 4 KiB reads cost thousands of syscalls.
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 0);
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var buffer = System.Buffers.ArrayPool<byte>.Shared.Rent(1 << 20);
        try
        {
            int read;
            while ((read = stream.Read(buffer, 0, buffer.Length)) > 0)
            {
                hash.AppendData(buffer, 0, read);
            }
        }
        finally
        {
            System.Buffers.ArrayPool<byte>.Shared.Return(buffer);
        }

        return Convert.ToHexStringLower(hash.GetHashAndReset());
    }
}
