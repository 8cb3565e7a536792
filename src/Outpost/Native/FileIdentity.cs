using System.Buffers.Binary;
using System.Runtime.InteropServices;

namespace Outpost.Native;

/// <summary>
/// What a file is on disk, as statx(2) tells it: inode, size, and the change and modification
/// times to the nanosecond. Writing to a file, truncating it, or renaming another over it changes
/// this; <c>touch -d</c> can set the modification time back, but not the change time. Times are
/// as coarse as the kernel's clock tick, so, as git's index does, a file changed moments before
/// it was looked at is not trusted to show a later change (<see cref="SettledFor"/>).
/// </summary>
internal sealed partial class FileIdentity
{
    private const int AtFdCwd = -100;
    private const uint StatxBasicStats = 0x7ff;

    private FileIdentity(string key, DateTimeOffset changed)
    {
        Key = key;
        Changed = changed;
    }

    /// <summary>The identity as one line, for comparison with a stamp.</summary>
    public string Key { get; }

    /// <summary>When the file's inode last changed (its ctime).</summary>
    public DateTimeOffset Changed { get; }

    /// <summary>True when the file last changed at least <paramref name="age"/> ago.</summary>
    public bool SettledFor(TimeSpan age) => DateTimeOffset.UtcNow - Changed >= age;

    /// <summary>The file's identity, or null where statx is not available (then every start hashes).</summary>
    public static FileIdentity? Of(string path)
    {
        if (!OperatingSystem.IsLinux())
        {
            return null;
        }

        // struct statx has one layout on every architecture: 256 bytes, little-endian here.
        Span<byte> buffer = stackalloc byte[256];
        try
        {
            if (Statx(AtFdCwd, path, 0, StatxBasicStats, ref MemoryMarshal.GetReference(buffer)) != 0)
            {
                return null;
            }
        }
        catch (EntryPointNotFoundException)
        {
            return null; // a libc older than glibc 2.28
        }

        var inode = BinaryPrimitives.ReadUInt64LittleEndian(buffer[32..]);
        var size = BinaryPrimitives.ReadUInt64LittleEndian(buffer[40..]);
        var (changedSeconds, changedNanos) = Timestamp(buffer[96..]);
        var (modifiedSeconds, modifiedNanos) = Timestamp(buffer[112..]);
        var key = FormattableString.Invariant($"inode={inode} size={size} ctime={changedSeconds}.{changedNanos:D9} mtime={modifiedSeconds}.{modifiedNanos:D9}");
        return new FileIdentity(key, DateTimeOffset.FromUnixTimeSeconds(changedSeconds).AddTicks(changedNanos / 100));
    }

    private static (long Seconds, uint Nanos) Timestamp(ReadOnlySpan<byte> field) =>
        (BinaryPrimitives.ReadInt64LittleEndian(field), BinaryPrimitives.ReadUInt32LittleEndian(field[8..]));

    [LibraryImport("libc", EntryPoint = "statx", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int Statx(int directoryFd, string path, int flags, uint mask, ref byte buffer);
}
