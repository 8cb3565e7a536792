using System.Text;

namespace Outpost.Wasm.Wasi;

/// <summary>
/// A host directory a guest sees as a preopen at <paramref name="GuestPath"/>: read-only
/// content shipped with an app, or a writable volume (with a byte quota when
/// <paramref name="Quota"/> is set).
/// </summary>
public sealed record WasiMount(string GuestPath, string HostPath, bool ReadOnly, VolumeQuota? Quota = null);

/// <summary>
/// The bytes a volume may hold, shared by every run of its app. Usage is counted once when the
/// volume is mounted (regular files, each inode once) and then kept up to date by the writes,
/// truncations, unlinks and renames guests make through WASI; a write that would pass the
/// limit fails with ENOSPC and is counted.
/// </summary>
public sealed class VolumeQuota
{
    private long _used;
    private long _refusals;

    public VolumeQuota(long limitBytes, long usedBytes = 0)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(limitBytes);
        LimitBytes = limitBytes;
        _used = usedBytes;
    }

    /// <summary>A quota for <paramref name="directory"/>, with what it already holds counted.</summary>
    public static VolumeQuota ForDirectory(string directory, long limitBytes) => new(limitBytes, Measure(directory));

    public long LimitBytes { get; }

    public long UsedBytes => Interlocked.Read(ref _used);

    /// <summary>Writes refused for going over the limit.</summary>
    public long Refusals => Interlocked.Read(ref _refusals);

    /// <summary>The bytes of regular files under <paramref name="directory"/>, hard links counted once, symlinks not followed.</summary>
    public static long Measure(string directory)
    {
        if (!Directory.Exists(directory))
        {
            return 0;
        }

        var seen = new HashSet<ulong>();
        long total = 0;
        var options = new EnumerationOptions { RecurseSubdirectories = true, AttributesToSkip = 0, IgnoreInaccessible = true, ReturnSpecialDirectories = false };
        foreach (var path in Directory.EnumerateFiles(directory, "*", options))
        {
            var bytes = Encoding.UTF8.GetBytes(path + "\0");
            if (Posix.StatAt(Posix.AtFdcwd, bytes, Posix.AtSymlinkNofollow, out var stat) == 0 && stat.IsRegular && seen.Add(stat.Inode))
            {
                total += (long)stat.Size;
            }
        }

        return total;
    }

    /// <summary>Takes <paramref name="bytes"/> of room; false (and counted) when that would pass the limit.</summary>
    internal bool TryReserve(long bytes)
    {
        if (bytes <= 0)
        {
            return true;
        }

        while (true)
        {
            var used = Interlocked.Read(ref _used);
            if (used + bytes > LimitBytes)
            {
                Interlocked.Increment(ref _refusals);
                return false;
            }

            if (Interlocked.CompareExchange(ref _used, used + bytes, used) == used)
            {
                return true;
            }
        }
    }

    /// <summary>Adds (or with a negative value returns) bytes: the correction once an operation's real effect is known.</summary>
    internal void Adjust(long bytes)
    {
        if (bytes != 0)
        {
            var now = Interlocked.Add(ref _used, bytes);
            if (now < 0)
            {
                Interlocked.CompareExchange(ref _used, 0, now);
            }
        }
    }
}

/// <summary>
/// An app's preopened directories, opened once and shared by all its runs (each run's fd table
/// refers to these descriptors and never closes them). Dispose when the app goes.
/// </summary>
public sealed class WasiMounts : IDisposable
{
    private readonly Preopen[] _preopens;

    private WasiMounts(Preopen[] preopens) => _preopens = preopens;

    internal IReadOnlyList<Preopen> Preopens => _preopens;

    public IReadOnlyList<WasiMount> Mounts => [.. _preopens.Select(p => p.Mount)];

    /// <summary>Opens each mount's host directory; throws naming the one that cannot be opened.</summary>
    public static WasiMounts Open(IEnumerable<WasiMount> mounts)
    {
        ArgumentNullException.ThrowIfNull(mounts);
        if (!OperatingSystem.IsLinux())
        {
            throw new PlatformNotSupportedException("WASI directories need Linux (openat2)");
        }

        var opened = new List<Preopen>();
        try
        {
            foreach (var mount in mounts)
            {
                if (string.IsNullOrEmpty(mount.GuestPath))
                {
                    throw new ArgumentException($"a mount of '{mount.HostPath}' has no guest path");
                }

                var fd = Posix.OpenDirectory(mount.HostPath);
                if (fd < 0)
                {
                    throw new IOException($"cannot open directory '{mount.HostPath}' for guest path '{mount.GuestPath}': errno {-fd}");
                }

                opened.Add(new Preopen(mount, fd, Encoding.UTF8.GetBytes(mount.GuestPath)));
            }

            // openat2's RESOLVE_BENEATH is Linux 5.6+: find out now rather than on a guest's first open.
            if (opened.Count > 0)
            {
                var probe = Posix.OpenBeneath(opened[0].Fd, ".\0"u8, Posix.OPath);
                if (probe < 0)
                {
                    throw new PlatformNotSupportedException($"this kernel cannot confine paths to a directory (openat2: errno {-probe}); WASI directories need Linux 5.6 or later");
                }

                _ = Posix.Close(probe);
            }

            return new WasiMounts([.. opened]);
        }
        catch
        {
            foreach (var preopen in opened)
            {
                _ = Posix.Close(preopen.Fd);
            }

            throw;
        }
    }

    public void Dispose()
    {
        foreach (var preopen in _preopens)
        {
            _ = Posix.Close(preopen.Fd);
        }
    }
}

/// <summary>One mount as the fd table uses it: the open directory and the guest's name for it.</summary>
internal sealed record Preopen(WasiMount Mount, int Fd, byte[] Name)
{
    public bool ReadOnly => Mount.ReadOnly;

    public VolumeQuota? Quota => Mount.Quota;
}
