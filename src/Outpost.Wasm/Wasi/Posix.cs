using System.Runtime.InteropServices;

namespace Outpost.Wasm.Wasi;

/// <summary>
/// The Linux calls WASI's file functions map onto, used on raw descriptors. Every path a guest
/// names is resolved with openat2 and RESOLVE_BENEATH (Linux 5.6+), as Wasmtime's cap-std does:
/// the kernel itself refuses <c>..</c> above the preopen, absolute paths and symlinks leading
/// outside, with no window between a check and the use. Paths cross as the guest's bytes.
/// </summary>
internal static unsafe partial class Posix
{
    public const int AtFdcwd = -100;
    public const int AtSymlinkNofollow = 0x100;
    public const int AtRemovedir = 0x200;
    public const int AtEmptyPath = 0x1000;

    public const int ORdonly = 0;
    public const int OWronly = 1;
    public const int ORdwr = 2;
    public const int OCreat = 0x40;
    public const int OExcl = 0x80;
    public const int OTrunc = 0x200;
    public const int OAppend = 0x400;
    public const int ONonblock = 0x800;
    public const int ODsync = 0x1000;
    public const int OSync = 0x101000;
    public const int OCloexec = 0x80000;
    public const int OPath = 0x200000;

    /// <summary>O_DIRECTORY and O_NOFOLLOW are numbered differently on arm64.</summary>
    public static readonly int ODirectory = RuntimeInformation.ProcessArchitecture == Architecture.Arm64 ? 0x4000 : 0x10000;

    /// <inheritdoc cref="ODirectory"/>
    public static readonly int ONofollow = RuntimeInformation.ProcessArchitecture == Architecture.Arm64 ? 0x8000 : 0x20000;

    private const long ResolveNoMagiclinks = 0x02;
    private const long ResolveBeneath = 0x08;
    private const long SysOpenat2 = 437; // the same number on every architecture since Linux 5.6

    public const int FGetfl = 3;
    public const int FSetfl = 4;

    public const int SeekSet = 0;
    public const int SeekCur = 1;
    public const int SeekEnd = 2;

    public const long UtimeNow = (1L << 30) - 1;
    public const long UtimeOmit = (1L << 30) - 2;

    public const int Enoent = 2;
    public const int Eintr = 4;
    public const int Exdev = 18;
    public const int Enosys = 38;

    [StructLayout(LayoutKind.Sequential)]
    private struct OpenHow
    {
        public ulong Flags;
        public ulong Mode;
        public ulong Resolve;
    }

    /// <summary>The parts of struct statx WASI needs (its layout is the same on every architecture).</summary>
    public readonly record struct FileStat(ulong Device, ulong Inode, int Mode, ulong Links, ulong Size, long Atime, long Mtime, long Ctime)
    {
        public bool IsDirectory => (Mode & 0xF000) == 0x4000;

        public bool IsRegular => (Mode & 0xF000) == 0x8000;
    }

    public static int LastError => Marshal.GetLastPInvokeError();

    /// <summary>Opens <paramref name="path"/> (NUL-terminated) beneath <paramref name="dirfd"/>; the descriptor, or -errno.</summary>
    public static int OpenBeneath(int dirfd, ReadOnlySpan<byte> path, int flags, int mode = 0)
    {
        var how = new OpenHow { Flags = (ulong)(uint)(flags | OCloexec), Mode = (ulong)mode, Resolve = (ulong)(ResolveBeneath | ResolveNoMagiclinks) };
        fixed (byte* p = path)
        {
            while (true)
            {
                var fd = Syscall(SysOpenat2, dirfd, (nint)p, (nint)(&how), sizeof(OpenHow));
                if (fd >= 0)
                {
                    return (int)fd;
                }

                var errno = LastError;
                if (errno != Eintr)
                {
                    return -errno;
                }
            }
        }
    }

    /// <summary>Opens a host directory the node configured (a trusted path, not a guest's).</summary>
    public static int OpenDirectory(string path)
    {
        var fd = Open(path, ORdonly | ODirectory | OCloexec, 0);
        return fd >= 0 ? fd : -LastError;
    }

    /// <summary>statx of a descriptor itself (any kind, O_PATH included); false with errno set on failure.</summary>
    public static int Stat(int fd, out FileStat stat) => StatAt(fd, ""u8, AtEmptyPath | AtSymlinkNofollow, out stat);

    public static int StatAt(int dirfd, ReadOnlySpan<byte> path, int flags, out FileStat stat)
    {
        var buffer = stackalloc byte[256];
        int result;
        fixed (byte* p = path.IsEmpty ? "\0"u8 : path)
        {
            result = Statx(dirfd, p, flags, 0x7FF, buffer);
        }

        if (result != 0)
        {
            stat = default;
            return LastError;
        }

        ulong U64(int at) => *(ulong*)(buffer + at);
        uint U32(int at) => *(uint*)(buffer + at);
        long Time(int at) => (*(long*)(buffer + at) * 1_000_000_000L) + U32(at + 8);
        var major = U32(136);
        var minor = U32(140);
        var device = ((ulong)(major & 0xFFFFF000) << 32) | ((ulong)(major & 0xFFF) << 8) | ((ulong)(minor & 0xFFFFFF00) << 12) | (minor & 0xFF);
        stat = new FileStat(device, U64(32), *(ushort*)(buffer + 28), U32(16), U64(40), Time(64), Time(112), Time(96));
        return 0;
    }

    [LibraryImport("libc", EntryPoint = "syscall", SetLastError = true)]
    private static partial long Syscall(long number, nint a, nint b, nint c, nint d);

    [LibraryImport("libc", EntryPoint = "open", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int Open(string path, int flags, int mode);

    [LibraryImport("libc", EntryPoint = "statx", SetLastError = true)]
    private static partial int Statx(int dirfd, byte* path, int flags, uint mask, byte* buffer);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    public static partial int Close(int fd);

    [LibraryImport("libc", EntryPoint = "read", SetLastError = true)]
    public static partial nint Read(int fd, byte* buffer, nint count);

    [LibraryImport("libc", EntryPoint = "write", SetLastError = true)]
    public static partial nint Write(int fd, byte* buffer, nint count);

    [LibraryImport("libc", EntryPoint = "pread64", SetLastError = true)]
    public static partial nint Pread(int fd, byte* buffer, nint count, long offset);

    [LibraryImport("libc", EntryPoint = "pwrite64", SetLastError = true)]
    public static partial nint Pwrite(int fd, byte* buffer, nint count, long offset);

    [LibraryImport("libc", EntryPoint = "lseek64", SetLastError = true)]
    public static partial long Lseek(int fd, long offset, int whence);

    [LibraryImport("libc", EntryPoint = "ftruncate64", SetLastError = true)]
    public static partial int Ftruncate(int fd, long length);

    [LibraryImport("libc", EntryPoint = "fsync", SetLastError = true)]
    public static partial int Fsync(int fd);

    [LibraryImport("libc", EntryPoint = "fdatasync", SetLastError = true)]
    public static partial int Fdatasync(int fd);

    /// <summary>Returns the error number itself (0 on success), as posix_fadvise does.</summary>
    [LibraryImport("libc", EntryPoint = "posix_fadvise64")]
    public static partial int Fadvise(int fd, long offset, long length, int advice);

    /// <summary>Returns the error number itself (0 on success), as posix_fallocate does.</summary>
    [LibraryImport("libc", EntryPoint = "posix_fallocate64")]
    public static partial int Fallocate(int fd, long offset, long length);

    [LibraryImport("libc", EntryPoint = "fcntl", SetLastError = true)]
    public static partial int Fcntl(int fd, int command, int argument);

    [LibraryImport("libc", EntryPoint = "getdents64", SetLastError = true)]
    public static partial nint Getdents(int fd, byte* buffer, nint count);

    [LibraryImport("libc", EntryPoint = "mkdirat", SetLastError = true)]
    public static partial int Mkdirat(int dirfd, byte* path, int mode);

    [LibraryImport("libc", EntryPoint = "unlinkat", SetLastError = true)]
    public static partial int Unlinkat(int dirfd, byte* path, int flags);

    [LibraryImport("libc", EntryPoint = "renameat", SetLastError = true)]
    public static partial int Renameat(int olddirfd, byte* oldpath, int newdirfd, byte* newpath);

    [LibraryImport("libc", EntryPoint = "linkat", SetLastError = true)]
    public static partial int Linkat(int olddirfd, byte* oldpath, int newdirfd, byte* newpath, int flags);

    [LibraryImport("libc", EntryPoint = "symlinkat", SetLastError = true)]
    public static partial int Symlinkat(byte* target, int newdirfd, byte* linkpath);

    [LibraryImport("libc", EntryPoint = "readlinkat", SetLastError = true)]
    public static partial nint Readlinkat(int dirfd, byte* path, byte* buffer, nint size);

    [LibraryImport("libc", EntryPoint = "utimensat", SetLastError = true)]
    public static partial int Utimensat(int dirfd, byte* path, long* times, int flags);

    [LibraryImport("libc", EntryPoint = "futimens", SetLastError = true)]
    public static partial int Futimens(int fd, long* times);
}
