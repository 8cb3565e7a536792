using System.Buffers.Binary;
using Wasmtime;

namespace Outpost.Wasm.Wasi;

/// <summary>
/// The file half of wasi_snapshot_preview1, over the run's <see cref="FdTable"/>: preopened
/// directories of the app's mounts and what the guest opens beneath them. Paths resolve with
/// RESOLVE_BENEATH (see <see cref="Posix"/>): <c>..</c> above a preopen, absolute paths and
/// symlinks leading out are refused with PERM, as Wasmtime does. A read-only mount refuses
/// every change with PERM; a volume's quota refuses growth past it with NOSPC. Stdio (fds 0–2)
/// stays in <see cref="WasiPreview1"/>; these functions see fds from 3 up.
/// </summary>
internal static unsafe class WasiFiles
{
    private const int MaxPathBytes = 4096;

    /// <summary>The most iovecs one read or write takes (Linux's IOV_MAX); more is EINVAL, as there.</summary>
    private const int MaxIovecs = 1024;

    private const int OflagCreat = 1;
    private const int OflagDirectory = 2;
    private const int OflagExcl = 4;
    private const int OflagTrunc = 8;

    private const int FdflagAppend = 1;
    private const int FdflagDsync = 2;
    private const int FdflagNonblock = 4;
    private const int FdflagRsync = 8;
    private const int FdflagSync = 16;

    private const int LookupSymlinkFollow = 1;

    private const int FstAtim = 1;
    private const int FstAtimNow = 2;
    private const int FstMtim = 4;
    private const int FstMtimNow = 8;

    public static void Define(Linker linker, string module, Func<Caller, WasiContext> contextOf, Func<Caller, Memory?> memoryOf)
    {
        FdTable Files(Caller c) => contextOf(c).Files;

        linker.DefineFunction(module, "fd_prestat_get", (Caller c, int fd, int buf) =>
        {
            var file = Files(c).Get(fd);
            if (file?.PreopenName is not { } name)
            {
                return Errno.Badf;
            }

            return Guest(memoryOf(c), buf, 8, out var span) ?? Fill(span, 0, (uint)name.Length);
        });
        linker.DefineFunction(module, "fd_prestat_dir_name", (Caller c, int fd, int path, int len) =>
        {
            var file = Files(c).Get(fd);
            if (file?.PreopenName is not { } name)
            {
                return Errno.Badf;
            }

            if (len < name.Length)
            {
                return Errno.Nametoolong;
            }

            if (Guest(memoryOf(c), path, name.Length, out var span) is { } fault)
            {
                return fault;
            }

            name.CopyTo(span);
            return Errno.Success;
        });
        linker.DefineFunction(module, "fd_close", (Caller c, int fd) => fd is >= 0 and <= 2 ? Errno.Success : Files(c).Close(fd) ? Errno.Success : Errno.Badf);
        linker.DefineFunction(module, "fd_renumber", (Caller c, int from, int to) => Files(c).Renumber(from, to) ? Errno.Success : Errno.Badf);
        linker.DefineFunction(module, "fd_advise", (Caller c, int fd, long offset, long length, int advice) =>
            Files(c).Get(fd) is not { } file ? Errno.Badf
            : advice is < 0 or > 5 || offset < 0 || length < 0 ? Errno.Inval
            : Errno.FromLinux(Posix.Fadvise(file.Fd, offset, length, advice)));
        linker.DefineFunction(module, "fd_allocate", (Caller c, int fd, long offset, long length) =>
            Allocate(contextOf(c), fd, offset, length));
        linker.DefineFunction(module, "fd_datasync", (Caller c, int fd) =>
            Files(c).Get(fd) is not { } file ? Errno.Badf : Result(Posix.Fdatasync(file.Fd)));
        linker.DefineFunction(module, "fd_sync", (Caller c, int fd) =>
            Files(c).Get(fd) is not { } file ? Errno.Badf : Result(Posix.Fsync(file.Fd)));
        linker.DefineFunction(module, "fd_fdstat_set_flags", (Caller c, int fd, int flags) => SetFlags(Files(c), fd, flags));
        linker.DefineFunction(module, "fd_fdstat_set_rights", (Caller c, int fd, long rightsBase, long inheriting) =>
        {
            if (Files(c).Get(fd) is not { } file)
            {
                return fd is >= 0 and <= 2 ? Errno.Notsup : Errno.Badf;
            }

            // Rights only ever shrink.
            if (((ulong)rightsBase & ~file.RightsBase) != 0 || ((ulong)inheriting & ~file.RightsInheriting) != 0)
            {
                return Errno.Notcapable;
            }

            file.RightsBase = (ulong)rightsBase;
            file.RightsInheriting = (ulong)inheriting;
            return Errno.Success;
        });
        linker.DefineFunction(module, "fd_filestat_get", (Caller c, int fd, int buf) =>
        {
            var memory = memoryOf(c);
            if (fd is >= 0 and <= 2)
            {
                return Guest(memory, buf, 64, out var stdio) ?? WriteStdioStat(stdio);
            }

            if (Files(c).Get(fd) is not { } file)
            {
                return Errno.Badf;
            }

            var error = Posix.Stat(file.Fd, out var stat);
            return error != 0 ? Errno.FromLinux(error) : Guest(memory, buf, 64, out var span) ?? WriteFilestat(span, stat);
        });
        linker.DefineFunction(module, "fd_filestat_set_size", (Caller c, int fd, long size) => SetSize(contextOf(c), fd, size));
        linker.DefineFunction(module, "fd_filestat_set_times", (Caller c, int fd, long atim, long mtim, int flags) =>
        {
            if (Files(c).Get(fd) is not { } file)
            {
                return Errno.Badf;
            }

            if (file.Root.ReadOnly)
            {
                return Errno.Perm;
            }

            if (!Times(atim, mtim, flags, out var a0, out var a1, out var m0, out var m1))
            {
                return Errno.Inval;
            }

            var times = stackalloc long[] { a0, a1, m0, m1 };
            return Result(Posix.Futimens(file.Fd, times));
        });
        linker.DefineFunction(module, "fd_pread", (Caller c, int fd, int iovs, int iovsLen, long offset, int nread) =>
            ReadFile(contextOf(c), memoryOf(c), fd, iovs, iovsLen, offset, nread));
        linker.DefineFunction(module, "fd_pwrite", (Caller c, int fd, int iovs, int iovsLen, long offset, int nwritten) =>
            WriteFile(contextOf(c), memoryOf(c), fd, iovs, iovsLen, offset, nwritten));
        linker.DefineFunction(module, "fd_readdir", (Caller c, int fd, int buf, int bufLen, long cookie, int bufused) =>
            ReadDirectory(Files(c), memoryOf(c), fd, buf, bufLen, cookie, bufused));
        linker.DefineFunction(module, "fd_tell", (Caller c, int fd, int result) =>
        {
            if (fd is >= 0 and <= 2)
            {
                return Errno.Spipe;
            }

            if (Files(c).Get(fd) is not { } file)
            {
                return Errno.Badf;
            }

            var position = Posix.Lseek(file.Fd, 0, Posix.SeekCur);
            return position < 0 ? Errno.FromLinux(Posix.LastError) : Guest(memoryOf(c), result, 8, out var span) ?? Fill(span, position);
        });
        linker.DefineFunction(module, "fd_seek", (Caller c, int fd, long offset, int whence, int result) =>
        {
            if (fd is >= 0 and <= 2)
            {
                return Errno.Spipe;
            }

            if (Files(c).Get(fd) is not { } file)
            {
                return Errno.Badf;
            }

            if (whence is < 0 or > 2)
            {
                return Errno.Inval;
            }

            if (file.IsDirectory)
            {
                return Errno.Badf;
            }

            var position = Posix.Lseek(file.Fd, offset, whence); // WASI's whence values are Linux's
            return position < 0 ? Errno.FromLinux(Posix.LastError) : Guest(memoryOf(c), result, 8, out var span) ?? Fill(span, position);
        });

        linker.DefineFunction(module, "path_open", (Caller c, ReadOnlySpan<ValueBox> args, Span<ValueBox> results) =>
            results[0] = PathOpen(contextOf(c), memoryOf(c), args[0].AsInt32(), args[1].AsInt32(), args[2].AsInt32(), args[3].AsInt32(),
                args[4].AsInt32(), (ulong)args[5].AsInt64(), (ulong)args[6].AsInt64(), args[7].AsInt32(), args[8].AsInt32()),
            [ValueKind.Int32, ValueKind.Int32, ValueKind.Int32, ValueKind.Int32, ValueKind.Int32, ValueKind.Int64, ValueKind.Int64, ValueKind.Int32, ValueKind.Int32],
            [ValueKind.Int32]);
        linker.DefineFunction(module, "path_create_directory", (Caller c, int fd, int path, int len) =>
            OnLast(contextOf(c), memoryOf(c), fd, path, len, Errno.Exist, mutates: true, (parent, last, _) => Result(Posix.Mkdirat(parent, last, 0x1FF))));
        linker.DefineFunction(module, "path_remove_directory", (Caller c, int fd, int path, int len) =>
            OnLast(contextOf(c), memoryOf(c), fd, path, len, Errno.Notempty, mutates: true, (parent, last, _) => Result(Posix.Unlinkat(parent, last, Posix.AtRemovedir))));
        linker.DefineFunction(module, "path_unlink_file", (Caller c, int fd, int path, int len) =>
            OnLast(contextOf(c), memoryOf(c), fd, path, len, Errno.Isdir, mutates: true, (parent, last, file) =>
            {
                var freed = FreedByRemoving(file, parent, last);
                var result = Result(Posix.Unlinkat(parent, last, 0));
                if (result == Errno.Success)
                {
                    file.Root.Quota?.Adjust(-freed);
                }

                return result;
            }));
        linker.DefineFunction(module, "path_readlink", (Caller c, int fd, int path, int len, int buf, int bufLen, int bufused) =>
        {
            var memory = memoryOf(c);
            if (Guest(memory, buf, bufLen, out _) is not null || Guest(memory, bufused, 4, out _) is not null)
            {
                return Errno.Fault;
            }

            return OnLast(contextOf(c), memory, fd, path, len, Errno.Inval, mutates: false, (parent, last, _) =>
            {
                Guest(memory, buf, bufLen, out var target);
                nint n;
                fixed (byte* p = target)
                {
                    n = Posix.Readlinkat(parent, last, p, target.Length);
                }

                if (n < 0)
                {
                    return Errno.FromLinux(Posix.LastError);
                }

                Guest(memory, bufused, 4, out var used);
                return Fill(used, (uint)n);
            });
        });
        linker.DefineFunction(module, "path_symlink", (Caller c, int oldPath, int oldLen, int fd, int newPath, int newLen) =>
        {
            var memory = memoryOf(c);
            if (ReadPath(memory, oldPath, oldLen, out var target) is { } error)
            {
                return error;
            }

            if (target[0] == '/')
            {
                return Errno.Perm; // an absolute link could only ever lead out of the preopen
            }

            return OnLast(contextOf(c), memory, fd, newPath, newLen, Errno.Exist, mutates: true, (parent, last, _) =>
            {
                fixed (byte* t = target)
                {
                    return Result(Posix.Symlinkat(t, parent, last));
                }
            });
        });
        linker.DefineFunction(module, "path_filestat_get", (Caller c, int fd, int flags, int path, int len, int buf) =>
        {
            var memory = memoryOf(c);
            return WithResolved(contextOf(c), memory, fd, flags, path, len, Posix.OPath, (file, _) =>
            {
                var error = Posix.Stat(file, out var stat);
                return error != 0 ? Errno.FromLinux(error) : Guest(memory, buf, 64, out var span) ?? WriteFilestat(span, stat);
            });
        });
        linker.DefineFunction(module, "path_filestat_set_times", (Caller c, ReadOnlySpan<ValueBox> args, Span<ValueBox> results) =>
            results[0] = PathSetTimes(contextOf(c), memoryOf(c), args[0].AsInt32(), args[1].AsInt32(), args[2].AsInt32(), args[3].AsInt32(),
                args[4].AsInt64(), args[5].AsInt64(), args[6].AsInt32()),
            [ValueKind.Int32, ValueKind.Int32, ValueKind.Int32, ValueKind.Int32, ValueKind.Int64, ValueKind.Int64, ValueKind.Int32],
            [ValueKind.Int32]);
        linker.DefineFunction(module, "path_link", (Caller c, ReadOnlySpan<ValueBox> args, Span<ValueBox> results) =>
            results[0] = PathLink(contextOf(c), memoryOf(c), args[0].AsInt32(), args[1].AsInt32(), args[2].AsInt32(), args[3].AsInt32(),
                args[4].AsInt32(), args[5].AsInt32(), args[6].AsInt32()),
            [ValueKind.Int32, ValueKind.Int32, ValueKind.Int32, ValueKind.Int32, ValueKind.Int32, ValueKind.Int32, ValueKind.Int32],
            [ValueKind.Int32]);
        linker.DefineFunction(module, "path_rename", (Caller c, int fd, int oldPath, int oldLen, int newFd, int newPath, int newLen) =>
            PathRename(contextOf(c), memoryOf(c), fd, oldPath, oldLen, newFd, newPath, newLen));
    }

    /// <summary>fd_read of a file (fds 3 and up); <paramref name="offset"/> below zero reads at the file's position.</summary>
    internal static int ReadFile(WasiContext context, Memory? memory, int fd, int iovs, int iovsLen, long offset, int nreadPtr)
    {
        if (context.Files.Get(fd) is not { } file)
        {
            return Errno.Badf;
        }

        if (!file.Has(Rights.FdRead))
        {
            return Errno.Notcapable;
        }

        if (offset < -1 || iovsLen is < 0 or > MaxIovecs)
        {
            return Errno.Inval;
        }

        if (Guest(memory, iovs, iovsLen * 8, out var vectors) is not null || Guest(memory, nreadPtr, 4, out _) is not null)
        {
            return Errno.Fault;
        }

        long total = 0;
        for (var i = 0; i < iovsLen; i++)
        {
            var (ptr, len) = Iovec(vectors, i);
            if (Guest(memory, ptr, len, out var target) is not null)
            {
                return Errno.Fault;
            }

            nint n;
            fixed (byte* p = target)
            {
                n = offset < 0 ? Posix.Read(file.Fd, p, len) : Posix.Pread(file.Fd, p, len, offset + total);
            }

            if (n < 0)
            {
                if (total > 0)
                {
                    break;
                }

                return Errno.FromLinux(Posix.LastError);
            }

            total += n;
            if (n < len)
            {
                break;
            }
        }

        Guest(memory, nreadPtr, 4, out var result);
        return Fill(result, (uint)total);
    }

    /// <summary>fd_write to a file; <paramref name="offset"/> below zero writes at the file's position (or its end when appending).</summary>
    internal static int WriteFile(WasiContext context, Memory? memory, int fd, int iovs, int iovsLen, long offset, int nwrittenPtr)
    {
        if (context.Files.Get(fd) is not { } file)
        {
            return Errno.Badf;
        }

        if (!file.Has(Rights.FdWrite))
        {
            return Errno.Notcapable;
        }

        if (file.Root.ReadOnly)
        {
            return Errno.Perm;
        }

        if (offset < -1 || iovsLen is < 0 or > MaxIovecs)
        {
            return Errno.Inval;
        }

        if (Guest(memory, iovs, iovsLen * 8, out var vectors) is not null || Guest(memory, nwrittenPtr, 4, out _) is not null)
        {
            return Errno.Fault;
        }

        long length = 0;
        for (var i = 0; i < iovsLen; i++)
        {
            var (ptr, len) = Iovec(vectors, i);
            if (Guest(memory, ptr, len, out _) is not null)
            {
                return Errno.Fault;
            }

            length += len;
        }

        var quota = file.Root.Quota;
        long before = 0;
        long reserved = 0;
        if (quota is not null && length > 0)
        {
            if (Posix.Stat(file.Fd, out var stat) is var error && error != 0)
            {
                return Errno.FromLinux(error);
            }

            before = (long)stat.Size;
            var at = offset >= 0 ? offset
                : (Posix.Fcntl(file.Fd, Posix.FGetfl, 0) & Posix.OAppend) != 0 ? before
                : Posix.Lseek(file.Fd, 0, Posix.SeekCur);
            reserved = Math.Max(0, at + length - before);
            if (!quota.TryReserve(reserved))
            {
                context.VolumeFull = true;
                context.Note($"volume at {file.Root.Mount.GuestPath} is full: a write of {length} bytes would pass its quota of {quota.LimitBytes} bytes ({quota.UsedBytes} used)");
                return Errno.Nospc;
            }
        }

        long total = 0;
        var failure = Errno.Success;
        for (var i = 0; i < iovsLen; i++)
        {
            var (ptr, len) = Iovec(vectors, i);
            Guest(memory, ptr, len, out var source);
            nint n;
            fixed (byte* p = source)
            {
                n = offset < 0 ? Posix.Write(file.Fd, p, len) : Posix.Pwrite(file.Fd, p, len, offset + total);
            }

            if (n < 0)
            {
                failure = Errno.FromLinux(Posix.LastError);
                break;
            }

            total += n;
            if (n < len)
            {
                break;
            }
        }

        if (quota is not null && length > 0)
        {
            var after = Posix.Stat(file.Fd, out var now) == 0 ? (long)now.Size : before + reserved;
            quota.Adjust(after - before - reserved);
        }

        if (total == 0 && failure != Errno.Success)
        {
            return failure;
        }

        Guest(memory, nwrittenPtr, 4, out var result);
        return Fill(result, (uint)total);
    }

    /// <summary>The i-th iovec of an array: a buffer's pointer and length in guest memory.</summary>
    private static (int Ptr, int Len) Iovec(Span<byte> vectors, int i) =>
        (BinaryPrimitives.ReadInt32LittleEndian(vectors[(i * 8)..]), BinaryPrimitives.ReadInt32LittleEndian(vectors[((i * 8) + 4)..]));

    private static int Allocate(WasiContext context, int fd, long offset, long length)
    {
        if (context.Files.Get(fd) is not { } file)
        {
            return Errno.Badf;
        }

        if (file.Root.ReadOnly)
        {
            return Errno.Perm;
        }

        if (offset < 0 || length <= 0)
        {
            return Errno.Inval;
        }

        return Grow(context, file, offset + length, () => Posix.Fallocate(file.Fd, offset, length));
    }

    private static int SetSize(WasiContext context, int fd, long size)
    {
        if (context.Files.Get(fd) is not { } file)
        {
            return Errno.Badf;
        }

        if (file.Root.ReadOnly)
        {
            return Errno.Perm;
        }

        if (size < 0)
        {
            return Errno.Inval;
        }

        return Grow(context, file, size, () => Posix.Ftruncate(file.Fd, size) == 0 ? 0 : Posix.LastError);
    }

    /// <summary>Runs a size change (it returns 0 or a Linux errno) with the volume's quota kept right.</summary>
    private static int Grow(WasiContext context, OpenFile file, long end, Func<int> change)
    {
        var quota = file.Root.Quota;
        if (Posix.Stat(file.Fd, out var stat) is var error && error != 0)
        {
            return Errno.FromLinux(error);
        }

        if (stat.IsDirectory)
        {
            return Errno.Isdir;
        }

        var before = (long)stat.Size;
        var reserved = Math.Max(0, end - before);
        if (quota is not null && !quota.TryReserve(reserved))
        {
            context.VolumeFull = true;
            context.Note($"volume at {file.Root.Mount.GuestPath} is full: growing a file to {end} bytes would pass its quota of {quota.LimitBytes} bytes ({quota.UsedBytes} used)");
            return Errno.Nospc;
        }

        var result = change();
        if (quota is not null)
        {
            var after = Posix.Stat(file.Fd, out var now) == 0 ? (long)now.Size : before;
            quota.Adjust(after - before - reserved);
        }

        return Errno.FromLinux(result);
    }

    private static int SetFlags(FdTable files, int fd, int flags)
    {
        if (fd is >= 0 and <= 2)
        {
            return Errno.Success; // stdio is in memory: nothing to change
        }

        if (files.Get(fd) is not { } file)
        {
            return Errno.Badf;
        }

        if ((flags & (FdflagDsync | FdflagRsync | FdflagSync)) != 0)
        {
            return Errno.Notsup; // Linux cannot change these on an open file
        }

        if ((flags & FdflagAppend) != 0 && file.Root.ReadOnly)
        {
            return Errno.Perm;
        }

        var current = Posix.Fcntl(file.Fd, Posix.FGetfl, 0);
        if (current < 0)
        {
            return Errno.FromLinux(Posix.LastError);
        }

        var updated = (current & ~(Posix.OAppend | Posix.ONonblock))
            | ((flags & FdflagAppend) != 0 ? Posix.OAppend : 0)
            | ((flags & FdflagNonblock) != 0 ? Posix.ONonblock : 0);
        return Result(Posix.Fcntl(file.Fd, Posix.FSetfl, updated));
    }

    /// <summary>fd_fdstat_get of a file (fds 3 and up): type, flags and rights.</summary>
    internal static int Fdstat(FdTable files, Span<byte> span, int fd)
    {
        if (files.Get(fd) is not { } file)
        {
            return Errno.Badf;
        }

        var status = Posix.Fcntl(file.Fd, Posix.FGetfl, 0);
        var flags = 0;
        if (status >= 0)
        {
            flags |= (status & Posix.OAppend) != 0 ? FdflagAppend : 0;
            flags |= (status & Posix.ONonblock) != 0 ? FdflagNonblock : 0;
            flags |= (status & Posix.OSync) == Posix.OSync ? FdflagSync | FdflagRsync : (status & Posix.ODsync) != 0 ? FdflagDsync : 0;
        }

        span.Clear();
        span[0] = file.FileType;
        BinaryPrimitives.WriteUInt16LittleEndian(span[2..], (ushort)flags);
        BinaryPrimitives.WriteUInt64LittleEndian(span[8..], file.RightsBase);
        BinaryPrimitives.WriteUInt64LittleEndian(span[16..], file.RightsInheriting);
        return Errno.Success;
    }

    private static int PathOpen(WasiContext context, Memory? memory, int fd, int lookup, int pathPtr, int pathLen, int oflags,
        ulong rightsBase, ulong rightsInheriting, int fdflags, int resultPtr)
    {
        if (context.Files.Get(fd) is not { } dir)
        {
            return Errno.Badf;
        }

        if (!dir.IsDirectory)
        {
            return Errno.Notdir;
        }

        if (ReadPath(memory, pathPtr, pathLen, out var path) is { } error)
        {
            return error;
        }

        if (Guest(memory, resultPtr, 4, out _) is not null)
        {
            return Errno.Fault;
        }

        var read = (rightsBase & (Rights.FdRead | Rights.FdReaddir)) != 0;
        var write = (rightsBase & Rights.Writing) != 0 || (fdflags & FdflagAppend) != 0 || (oflags & OflagTrunc) != 0;
        if (dir.Root.ReadOnly && (write || (oflags & OflagCreat) != 0))
        {
            return Errno.Perm;
        }

        var flags = write ? (read ? Posix.ORdwr : Posix.OWronly) : Posix.ORdonly;
        flags |= (oflags & OflagCreat) != 0 ? Posix.OCreat : 0;
        flags |= (oflags & OflagExcl) != 0 ? Posix.OExcl : 0;
        flags |= (oflags & OflagTrunc) != 0 ? Posix.OTrunc : 0;
        flags |= (oflags & OflagDirectory) != 0 ? Posix.ODirectory : 0;
        flags |= (lookup & LookupSymlinkFollow) == 0 ? Posix.ONofollow : 0;
        flags |= (fdflags & FdflagAppend) != 0 ? Posix.OAppend : 0;
        flags |= (fdflags & FdflagNonblock) != 0 ? Posix.ONonblock : 0;
        flags |= (fdflags & (FdflagSync | FdflagRsync)) != 0 ? Posix.OSync : (fdflags & FdflagDsync) != 0 ? Posix.ODsync : 0;

        // Truncating frees what the file held: know how much first.
        long truncated = 0;
        if ((oflags & OflagTrunc) != 0 && dir.Root.Quota is not null)
        {
            var probe = Posix.OpenBeneath(dir.Fd, path, Posix.OPath | (flags & Posix.ONofollow));
            if (probe >= 0)
            {
                if (Posix.Stat(probe, out var stat) == 0 && stat.IsRegular && stat.Links == 1)
                {
                    truncated = (long)stat.Size;
                }

                _ = Posix.Close(probe);
            }
        }

        var opened = Posix.OpenBeneath(dir.Fd, path, flags, (flags & Posix.OCreat) != 0 ? 0x1B6 : 0); // openat2 refuses a mode without O_CREAT
        if (opened < 0)
        {
            return Errno.FromLinux(-opened);
        }

        if (Posix.Stat(opened, out var info) != 0)
        {
            var failure = Posix.LastError;
            _ = Posix.Close(opened);
            return Errno.FromLinux(failure);
        }

        dir.Root.Quota?.Adjust(-truncated);
        var type = WasiFileType.FromMode(info.Mode);
        var inherited = dir.RightsInheriting;
        var file = new OpenFile(opened, owned: true, dir.Root, type, rightsBase & inherited, rightsInheriting & inherited);
        var number = context.Files.Add(file);
        if (number < 0)
        {
            file.Release();
            return Errno.Mfile;
        }

        Guest(memory, resultPtr, 4, out var result);
        return Fill(result, (uint)number);
    }

    private static int PathSetTimes(WasiContext context, Memory? memory, int fd, int lookup, int pathPtr, int pathLen, long atim, long mtim, int fstflags)
    {
        if (!Times(atim, mtim, fstflags, out var a0, out var a1, out var m0, out var m1))
        {
            return Errno.Inval;
        }

        if (context.Files.Get(fd) is { Root.ReadOnly: true })
        {
            return Errno.Perm;
        }

        if ((lookup & LookupSymlinkFollow) != 0)
        {
            // Following: open what the path names (beneath the preopen), then set the times of that.
            return WithResolved(context, memory, fd, lookup, pathPtr, pathLen, Posix.ORdonly | Posix.ONonblock, (file, _) =>
            {
                var times = stackalloc long[] { a0, a1, m0, m1 };
                return Result(Posix.Futimens(file, times));
            });
        }

        return OnLast(context, memory, fd, pathPtr, pathLen, Errno.Inval, mutates: true, (parent, last, _) =>
        {
            var times = stackalloc long[] { a0, a1, m0, m1 };
            return Result(Posix.Utimensat(parent, last, times, Posix.AtSymlinkNofollow));
        }, allowDots: true);
    }

    private static int PathLink(WasiContext context, Memory? memory, int oldFd, int oldFlags, int oldPath, int oldLen, int newFd, int newPath, int newLen)
    {
        var files = context.Files;
        if (files.Get(oldFd) is not { } source || files.Get(newFd) is not { } target)
        {
            return Errno.Badf;
        }

        if (!ReferenceEquals(source.Root, target.Root))
        {
            return Errno.Xdev; // never a link from one mount into another (a read-only file made writable through a volume)
        }

        if (target.Root.ReadOnly)
        {
            return Errno.Perm;
        }

        if ((oldFlags & LookupSymlinkFollow) != 0)
        {
            return WithResolved(context, memory, oldFd, oldFlags, oldPath, oldLen, Posix.OPath, (resolved, _) =>
                OnLast(context, memory, newFd, newPath, newLen, Errno.Exist, mutates: true, (parent, last, _) =>
                {
                    // The file itself, reached through /proc: linkat's own following would not stay beneath the preopen.
                    var proc = System.Text.Encoding.ASCII.GetBytes($"/proc/self/fd/{resolved}\0");
                    fixed (byte* p = proc)
                    {
                        return Result(Posix.Linkat(Posix.AtFdcwd, p, parent, last, 0x400));
                    }
                }));
        }

        return OnLast(context, memory, oldFd, oldPath, oldLen, Errno.Perm, mutates: false, (oldParent, oldLast, _) =>
            OnLast(context, memory, newFd, newPath, newLen, Errno.Exist, mutates: true, (newParent, newLast, _) =>
                Result(Posix.Linkat(oldParent, oldLast, newParent, newLast, 0))));
    }

    private static int PathRename(WasiContext context, Memory? memory, int fd, int oldPath, int oldLen, int newFd, int newPath, int newLen)
    {
        var files = context.Files;
        if (files.Get(fd) is not { } source || files.Get(newFd) is not { } target)
        {
            return Errno.Badf;
        }

        if (!ReferenceEquals(source.Root, target.Root))
        {
            return Errno.Xdev;
        }

        return OnLast(context, memory, fd, oldPath, oldLen, Errno.Busy, mutates: true, (oldParent, oldLast, _) =>
            OnLast(context, memory, newFd, newPath, newLen, Errno.Busy, mutates: true, (newParent, newLast, file) =>
            {
                // A file replaced by the rename frees its bytes, unless it is the same file.
                long freed = 0;
                if (file.Root.Quota is not null
                    && Posix.StatAt(newParent, new ReadOnlySpan<byte>(newLast, Length(newLast) + 1), Posix.AtSymlinkNofollow, out var replaced) == 0
                    && Posix.StatAt(oldParent, new ReadOnlySpan<byte>(oldLast, Length(oldLast) + 1), Posix.AtSymlinkNofollow, out var moved) == 0
                    && replaced.Inode != moved.Inode && replaced.IsRegular && replaced.Links == 1)
                {
                    freed = (long)replaced.Size;
                }

                var result = Result(Posix.Renameat(oldParent, oldLast, newParent, newLast));
                if (result == Errno.Success)
                {
                    file.Root.Quota?.Adjust(-freed);
                }

                return result;
            }));
    }

    private static int ReadDirectory(FdTable files, Memory? memory, int fd, int buf, int bufLen, long cookie, int bufusedPtr)
    {
        if (files.Get(fd) is not { } dir)
        {
            return Errno.Badf;
        }

        if (!dir.IsDirectory)
        {
            return Errno.Notdir;
        }

        if (!dir.Has(Rights.FdReaddir))
        {
            return Errno.Notcapable;
        }

        if (cookie < 0 || Guest(memory, buf, bufLen, out _) is not null || Guest(memory, bufusedPtr, 4, out _) is not null)
        {
            return cookie < 0 ? Errno.Inval : Errno.Fault;
        }

        // Read the directory afresh through its own descriptor: "." and ".." first, as Wasmtime lists
        // them, then the entries in the kernel's order. Cookie n means "after the n-th entry".
        var listing = Posix.OpenBeneath(dir.Fd, ".\0"u8, Posix.ORdonly | Posix.ODirectory);
        if (listing < 0)
        {
            return Errno.FromLinux(-listing);
        }

        var output = new System.Buffers.ArrayBufferWriter<byte>(Math.Min(bufLen, 64 * 1024) + 256);
        try
        {
            Posix.Stat(listing, out var self);
            long index = 0;
            if (Emit(output, ref index, cookie, bufLen, self.Inode, WasiFileType.Directory, "."u8)
                && Emit(output, ref index, cookie, bufLen, 0, WasiFileType.Directory, ".."u8))
            {
                var chunk = new byte[32 * 1024];
                var full = false;
                while (!full)
                {
                    nint n;
                    fixed (byte* p = chunk)
                    {
                        n = Posix.Getdents(listing, p, chunk.Length);
                    }

                    if (n < 0)
                    {
                        return Errno.FromLinux(Posix.LastError);
                    }

                    if (n == 0)
                    {
                        break;
                    }

                    for (var at = 0; at < n;)
                    {
                        var inode = BinaryPrimitives.ReadUInt64LittleEndian(chunk.AsSpan(at));
                        var length = BinaryPrimitives.ReadUInt16LittleEndian(chunk.AsSpan(at + 16));
                        var type = chunk[at + 18];
                        var name = chunk.AsSpan(at + 19, length - 19);
                        name = name[..name.IndexOf((byte)0)];
                        at += length;
                        if (name.SequenceEqual("."u8) || name.SequenceEqual(".."u8))
                        {
                            continue;
                        }

                        if (!Emit(output, ref index, cookie, bufLen, inode, WasiFileType.FromDirent(type), name))
                        {
                            full = true;
                            break;
                        }
                    }
                }
            }
        }
        finally
        {
            _ = Posix.Close(listing);
        }

        var used = Math.Min(output.WrittenCount, bufLen);
        Guest(memory, buf, used, out var target);
        output.WrittenSpan[..used].CopyTo(target);
        Guest(memory, bufusedPtr, 4, out var result);
        return Fill(result, (uint)used);
    }

    /// <summary>Appends one dirent (when past the cookie); false once the guest's buffer is full.</summary>
    private static bool Emit(System.Buffers.ArrayBufferWriter<byte> output, ref long index, long cookie, int bufLen, ulong inode, byte type, ReadOnlySpan<byte> name)
    {
        index++;
        if (index <= cookie)
        {
            return true;
        }

        var entry = output.GetSpan(24 + name.Length);
        entry[..24].Clear();
        BinaryPrimitives.WriteUInt64LittleEndian(entry, (ulong)index);
        BinaryPrimitives.WriteUInt64LittleEndian(entry[8..], inode);
        BinaryPrimitives.WriteUInt32LittleEndian(entry[16..], (uint)name.Length);
        entry[20] = type;
        name.CopyTo(entry[24..]);
        output.Advance(24 + name.Length);
        return output.WrittenCount < bufLen;
    }

    /// <summary>The bytes removing the entry frees from a volume: a regular file's size when this is its last link.</summary>
    private static long FreedByRemoving(OpenFile dir, int parent, byte* last)
    {
        if (dir.Root.Quota is null)
        {
            return 0;
        }

        return Posix.StatAt(parent, new ReadOnlySpan<byte>(last, Length(last) + 1), Posix.AtSymlinkNofollow, out var stat) == 0 && stat.IsRegular && stat.Links == 1
            ? (long)stat.Size
            : 0;
    }

    private static int Length(byte* text)
    {
        var n = 0;
        while (text[n] != 0)
        {
            n++;
        }

        return n;
    }

    private delegate int LastAction(int parent, byte* last, OpenFile dir);

    /// <summary>
    /// Runs <paramref name="action"/> on the path's last component, with its parent directory
    /// opened beneath the preopen. A last component of "." or ".." (which would name the
    /// parent's parent) is refused with <paramref name="dotsErrno"/> once the path is known to
    /// stay beneath.
    /// </summary>
    private static int OnLast(WasiContext context, Memory? memory, int fd, int pathPtr, int pathLen, int dotsErrno, bool mutates, LastAction action, bool allowDots = false)
    {
        if (context.Files.Get(fd) is not { } dir)
        {
            return Errno.Badf;
        }

        if (!dir.IsDirectory)
        {
            return Errno.Notdir;
        }

        if (mutates && dir.Root.ReadOnly)
        {
            return Errno.Perm;
        }

        if (ReadPath(memory, pathPtr, pathLen, out var path) is { } error)
        {
            return error;
        }

        var (parentPath, last) = Split(path);
        if (last.Length == 1 || (last.Length == 2 && last[0] == '.') || (last.Length == 3 && last[0] == '.' && last[1] == '.'))
        {
            // "", "." or "..": make sure it does not lead out, then refuse it the way Linux would.
            var whole = Posix.OpenBeneath(dir.Fd, path, Posix.OPath);
            if (whole < 0)
            {
                return Errno.FromLinux(-whole);
            }

            _ = Posix.Close(whole);
            if (!allowDots)
            {
                return dotsErrno;
            }
        }

        var parent = Posix.OpenBeneath(dir.Fd, parentPath, Posix.OPath | Posix.ODirectory);
        if (parent < 0)
        {
            return Errno.FromLinux(-parent);
        }

        try
        {
            fixed (byte* p = last)
            {
                return action(parent, p, dir);
            }
        }
        finally
        {
            _ = Posix.Close(parent);
        }
    }

    /// <summary>Opens what the path names beneath the preopen (following a last symlink when the lookup flags say so) and runs <paramref name="action"/> on it.</summary>
    private static int WithResolved(WasiContext context, Memory? memory, int fd, int lookup, int pathPtr, int pathLen, int flags, Func<int, OpenFile, int> action)
    {
        if (context.Files.Get(fd) is not { } dir)
        {
            return Errno.Badf;
        }

        if (!dir.IsDirectory)
        {
            return Errno.Notdir;
        }

        if (ReadPath(memory, pathPtr, pathLen, out var path) is { } error)
        {
            return error;
        }

        var opened = Posix.OpenBeneath(dir.Fd, path, flags | ((lookup & LookupSymlinkFollow) == 0 ? Posix.ONofollow : 0));
        if (opened < 0)
        {
            return Errno.FromLinux(-opened);
        }

        try
        {
            return action(opened, dir);
        }
        finally
        {
            _ = Posix.Close(opened);
        }
    }

    /// <summary>Splits a NUL-terminated path into its parent ("." when none) and last component, both NUL-terminated.</summary>
    private static (byte[] Parent, byte[] Last) Split(byte[] path)
    {
        var end = path.Length - 1; // the NUL
        while (end > 1 && path[end - 1] == '/')
        {
            end--;
        }

        var slash = Array.LastIndexOf(path, (byte)'/', end - 1);
        if (slash < 0)
        {
            return (".\0"u8.ToArray(), [.. path.AsSpan(0, end), 0]);
        }

        var parent = slash == 0 ? "/\0"u8.ToArray() : [.. path.AsSpan(0, slash), 0];
        return (parent, [.. path.AsSpan(slash + 1, end - slash - 1), 0]);
    }

    /// <summary>The guest's path as a NUL-terminated byte array, or the errno why not.</summary>
    private static int? ReadPath(Memory? memory, int ptr, int len, out byte[] path)
    {
        path = [];
        if (len > MaxPathBytes)
        {
            return Errno.Nametoolong;
        }

        if (Guest(memory, ptr, len, out var span) is { } fault)
        {
            return fault;
        }

        if (len == 0)
        {
            return Errno.Noent;
        }

        if (span.IndexOf((byte)0) >= 0)
        {
            return Errno.Inval;
        }

        path = new byte[len + 1];
        span.CopyTo(path);
        return null;
    }

    /// <summary>The guest's bytes at [ptr, ptr+len), or FAULT when that is not inside its memory.</summary>
    internal static int? Guest(Memory? memory, int ptr, int len, out Span<byte> span)
    {
        span = default;
        if (memory is null || ptr < 0 || len < 0 || (long)ptr + len > memory.GetLength())
        {
            return Errno.Fault;
        }

        span = memory.GetSpan(ptr, len);
        return null;
    }

    private static int Fill(Span<byte> span, uint value)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(span, value);
        return Errno.Success;
    }

    private static int Fill(Span<byte> span, long value)
    {
        BinaryPrimitives.WriteInt64LittleEndian(span, value);
        return Errno.Success;
    }

    private static int Fill(Span<byte> span, byte tag, uint value)
    {
        span.Clear();
        span[0] = tag;
        BinaryPrimitives.WriteUInt32LittleEndian(span[4..], value);
        return Errno.Success;
    }

    private static int Result(int libcResult) => libcResult == 0 ? Errno.Success : Errno.FromLinux(Posix.LastError);

    private static int WriteFilestat(Span<byte> span, Posix.FileStat stat)
    {
        span.Clear();
        BinaryPrimitives.WriteUInt64LittleEndian(span, stat.Device);
        BinaryPrimitives.WriteUInt64LittleEndian(span[8..], stat.Inode);
        span[16] = WasiFileType.FromMode(stat.Mode);
        BinaryPrimitives.WriteUInt64LittleEndian(span[24..], stat.Links);
        BinaryPrimitives.WriteUInt64LittleEndian(span[32..], stat.Size);
        BinaryPrimitives.WriteInt64LittleEndian(span[40..], stat.Atime);
        BinaryPrimitives.WriteInt64LittleEndian(span[48..], stat.Mtime);
        BinaryPrimitives.WriteInt64LittleEndian(span[56..], stat.Ctime);
        return Errno.Success;
    }

    private static int WriteStdioStat(Span<byte> span)
    {
        span.Clear();
        span[16] = WasiFileType.CharacterDevice;
        return Errno.Success;
    }

    /// <summary>WASI's (atim, mtim, fstflags) as two timespecs for utimensat; false when the flags contradict.</summary>
    private static bool Times(long atim, long mtim, int flags, out long aSec, out long aNsec, out long mSec, out long mNsec)
    {
        aSec = aNsec = mSec = mNsec = 0;
        if (((flags & FstAtim) != 0 && (flags & FstAtimNow) != 0) || ((flags & FstMtim) != 0 && (flags & FstMtimNow) != 0) || (flags & ~0xF) != 0)
        {
            return false;
        }

        (aSec, aNsec) = (flags & FstAtimNow) != 0 ? (0, Posix.UtimeNow) : (flags & FstAtim) != 0 ? (atim / 1_000_000_000, atim % 1_000_000_000) : (0, Posix.UtimeOmit);
        (mSec, mNsec) = (flags & FstMtimNow) != 0 ? (0, Posix.UtimeNow) : (flags & FstMtim) != 0 ? (mtim / 1_000_000_000, mtim % 1_000_000_000) : (0, Posix.UtimeOmit);
        return true;
    }
}
