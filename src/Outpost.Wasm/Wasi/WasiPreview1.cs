using System.Buffers.Binary;
using System.Security.Cryptography;
using Wasmtime;

namespace Outpost.Wasm.Wasi;

/// <summary>
/// Outpost's own implementation of wasi_snapshot_preview1, defined once on the shared
/// linker. Stdio reads and writes in-memory buffers of the run's <see cref="WasiContext"/>
/// (faster per request than a WASI config with files); there are no preopened directories
/// and no sockets, so every path and socket call fails with a WASI error code.
/// </summary>
internal static class WasiPreview1
{
    public const string ModuleName = "wasi_snapshot_preview1";

    private const int Success = 0;
    private const int Badf = 8;
    private const int Fault = 21;
    private const int Inval = 28;
    private const int Io = 29;
    private const int Nosys = 52;
    private const int Spipe = 70;
    private const int Notcapable = 76;

    private static readonly ValueKind I32 = ValueKind.Int32;
    private static readonly ValueKind I64 = ValueKind.Int64;

    /// <summary>Every function this host provides; a module importing anything else from WASI is rejected.</summary>
    public static IReadOnlySet<string> Functions => Stubs.Keys.Concat(Implemented).ToHashSet(StringComparer.Ordinal);

    private static readonly string[] Implemented =
    [
        "args_get", "args_sizes_get", "environ_get", "environ_sizes_get", "fd_write", "fd_read", "fd_close",
        "fd_seek", "fd_fdstat_get", "fd_prestat_get", "fd_prestat_dir_name", "proc_exit", "clock_time_get",
        "clock_res_get", "random_get", "sched_yield",
    ];

    // Calls that need a file, directory or socket: none exist, so each fails cleanly.
    private static readonly Dictionary<string, (ValueKind[] Params, int Errno)> Stubs = new(StringComparer.Ordinal)
    {
        ["fd_advise"] = ([I32, I64, I64, I32], Badf),
        ["fd_allocate"] = ([I32, I64, I64], Badf),
        ["fd_datasync"] = ([I32], Badf),
        ["fd_fdstat_set_flags"] = ([I32, I32], Badf),
        ["fd_fdstat_set_rights"] = ([I32, I64, I64], Badf),
        ["fd_filestat_get"] = ([I32, I32], Badf),
        ["fd_filestat_set_size"] = ([I32, I64], Badf),
        ["fd_filestat_set_times"] = ([I32, I64, I64, I32], Badf),
        ["fd_pread"] = ([I32, I32, I32, I64, I32], Badf),
        ["fd_pwrite"] = ([I32, I32, I32, I64, I32], Badf),
        ["fd_readdir"] = ([I32, I32, I32, I64, I32], Badf),
        ["fd_renumber"] = ([I32, I32], Badf),
        ["fd_sync"] = ([I32], Badf),
        ["fd_tell"] = ([I32, I32], Spipe),
        ["path_create_directory"] = ([I32, I32, I32], Notcapable),
        ["path_filestat_get"] = ([I32, I32, I32, I32, I32], Notcapable),
        ["path_filestat_set_times"] = ([I32, I32, I32, I32, I64, I64, I32], Notcapable),
        ["path_link"] = ([I32, I32, I32, I32, I32, I32, I32], Notcapable),
        ["path_open"] = ([I32, I32, I32, I32, I32, I64, I64, I32, I32], Notcapable),
        ["path_readlink"] = ([I32, I32, I32, I32, I32, I32], Notcapable),
        ["path_remove_directory"] = ([I32, I32, I32], Notcapable),
        ["path_rename"] = ([I32, I32, I32, I32, I32, I32], Notcapable),
        ["path_symlink"] = ([I32, I32, I32, I32, I32], Notcapable),
        ["path_unlink_file"] = ([I32, I32, I32], Notcapable),
        ["poll_oneoff"] = ([I32, I32, I32, I32], Nosys),
        ["proc_raise"] = ([I32], Nosys),
        ["sock_accept"] = ([I32, I32, I32], Notcapable),
        ["sock_recv"] = ([I32, I32, I32, I32, I32, I32], Notcapable),
        ["sock_send"] = ([I32, I32, I32, I32, I32], Notcapable),
        ["sock_shutdown"] = ([I32, I32], Notcapable),
    };

    public static void Define(Linker linker, TimeProvider time)
    {
        linker.DefineFunction(ModuleName, "args_sizes_get", (Caller c, int countPtr, int sizePtr) =>
            SizesGet(c, Ctx(c).Args, countPtr, sizePtr));
        linker.DefineFunction(ModuleName, "args_get", (Caller c, int ptrs, int buf) =>
            ListGet(c, Ctx(c).Args, ptrs, buf));
        linker.DefineFunction(ModuleName, "environ_sizes_get", (Caller c, int countPtr, int sizePtr) =>
            SizesGet(c, Ctx(c).Env, countPtr, sizePtr));
        linker.DefineFunction(ModuleName, "environ_get", (Caller c, int ptrs, int buf) =>
            ListGet(c, Ctx(c).Env, ptrs, buf));
        linker.DefineFunction(ModuleName, "fd_write", (Caller c, int fd, int iovs, int iovsLen, int nwritten) =>
            FdWrite(c, fd, iovs, iovsLen, nwritten));
        linker.DefineFunction(ModuleName, "fd_read", (Caller c, int fd, int iovs, int iovsLen, int nread) =>
            FdRead(c, fd, iovs, iovsLen, nread));
        linker.DefineFunction(ModuleName, "fd_close", (Caller c, int fd) => fd is >= 0 and <= 2 ? Success : Badf);
        linker.DefineFunction(ModuleName, "fd_seek", (Caller c, int fd, long offset, int whence, int newOffset) =>
            fd is >= 0 and <= 2 ? Spipe : Badf);
        linker.DefineFunction(ModuleName, "fd_fdstat_get", (Caller c, int fd, int buf) => FdstatGet(c, fd, buf));
        linker.DefineFunction(ModuleName, "fd_prestat_get", (Caller c, int fd, int buf) => Badf);
        linker.DefineFunction(ModuleName, "fd_prestat_dir_name", (Caller c, int fd, int path, int len) => Badf);
        linker.DefineFunction(ModuleName, "proc_exit", (Caller c, int code) =>
        {
            Ctx(c).ExitCode = code;
            throw new GuestExitException(code);
        });
        linker.DefineFunction(ModuleName, "clock_time_get", (Caller c, int id, long precision, int resultPtr) =>
            ClockTimeGet(c, time, id, resultPtr));
        linker.DefineFunction(ModuleName, "clock_res_get", (Caller c, int id, int resultPtr) =>
            id is >= 0 and <= 3 ? WriteU64(c, resultPtr, 1_000) : Inval);
        linker.DefineFunction(ModuleName, "random_get", (Caller c, int buf, int len) => RandomGet(c, buf, len));
        linker.DefineFunction(ModuleName, "sched_yield", () => Success);

        foreach (var (name, (parameters, errno)) in Stubs)
        {
            var result = errno;
            linker.DefineFunction(ModuleName, name, (Caller _, ReadOnlySpan<ValueBox> _, Span<ValueBox> results) => results[0] = result,
                parameters, [ValueKind.Int32]);
        }
    }

    private static WasiContext Ctx(Caller caller) => (WasiContext)caller.GetData()!;

    private static Memory? Mem(Caller caller) => MemoryOf(caller);

    /// <summary>The guest's "memory" export, looked up once per run.</summary>
    internal static Memory? MemoryOf(Caller caller)
    {
        var context = Ctx(caller);
        return context.Memory ??= caller.GetMemory("memory");
    }

    private static int SizesGet(Caller caller, IReadOnlyList<byte[]> items, int countPtr, int sizePtr)
    {
        var memory = Mem(caller);
        if (memory is null)
        {
            return Fault;
        }

        memory.WriteInt32(countPtr, items.Count);
        memory.WriteInt32(sizePtr, items.Sum(i => i.Length));
        return Success;
    }

    private static int ListGet(Caller caller, IReadOnlyList<byte[]> items, int ptrs, int buf)
    {
        var memory = Mem(caller);
        if (memory is null)
        {
            return Fault;
        }

        var offset = buf;
        for (var i = 0; i < items.Count; i++)
        {
            memory.WriteInt32(ptrs + (i * 4), offset);
            items[i].CopyTo(memory.GetSpan(offset, items[i].Length));
            offset += items[i].Length;
        }

        return Success;
    }

    private static int FdWrite(Caller caller, int fd, int iovs, int iovsLen, int nwrittenPtr)
    {
        var context = Ctx(caller);
        var target = fd switch
        {
            1 => context.Stdout,
            2 => context.Stderr,
            _ => null,
        };
        if (target is null)
        {
            return Badf;
        }

        var memory = Mem(caller);
        if (memory is null)
        {
            return Fault;
        }

        var written = 0;
        for (var i = 0; i < iovsLen; i++)
        {
            var ptr = memory.ReadInt32(iovs + (i * 8));
            var len = memory.ReadInt32(iovs + (i * 8) + 4);
            if (!target.Write(memory.GetSpan(ptr, len)))
            {
                if (fd == 1)
                {
                    // Over the response cap: stop the guest now rather than let it flood on.
                    throw new InvalidOperationException("response exceeded its size limit");
                }

                return Io; // stderr is only a log: drop the excess, let the guest run
            }

            written += len;
        }

        memory.WriteInt32(nwrittenPtr, written);
        return Success;
    }

    private static int FdRead(Caller caller, int fd, int iovs, int iovsLen, int nreadPtr)
    {
        if (fd != 0)
        {
            return Badf;
        }

        var memory = Mem(caller);
        if (memory is null)
        {
            return Fault;
        }

        var context = Ctx(caller);
        var total = 0;
        for (var i = 0; i < iovsLen; i++)
        {
            var ptr = memory.ReadInt32(iovs + (i * 8));
            var len = memory.ReadInt32(iovs + (i * 8) + 4);
            var n = context.ReadStdin(memory.GetSpan(ptr, len));
            total += n;
            if (n < len)
            {
                break;
            }
        }

        memory.WriteInt32(nreadPtr, total);
        return Success;
    }

    private static int FdstatGet(Caller caller, int fd, int buf)
    {
        if (fd is < 0 or > 2)
        {
            return Badf;
        }

        var memory = Mem(caller);
        if (memory is null)
        {
            return Fault;
        }

        var span = memory.GetSpan(buf, 24);
        span.Clear();
        span[0] = 2; // filetype: character device
        // Rights: fd_read (bit 1) for stdin, fd_write (bit 6) for stdout/stderr.
        BinaryPrimitives.WriteUInt64LittleEndian(span[8..], fd == 0 ? 1UL << 1 : 1UL << 6);
        return Success;
    }

    private static int ClockTimeGet(Caller caller, TimeProvider time, int id, int resultPtr)
    {
        var ns = id switch
        {
            0 => (time.GetUtcNow() - DateTimeOffset.UnixEpoch).Ticks * 100L, // realtime
            1 or 2 or 3 => (long)(time.GetTimestamp() * (1_000_000_000.0 / time.TimestampFrequency)), // monotonic, cpu time
            _ => -1L,
        };
        return ns < 0 ? Inval : WriteU64(caller, resultPtr, ns);
    }

    private static int WriteU64(Caller caller, int ptr, long value)
    {
        var memory = Mem(caller);
        if (memory is null)
        {
            return Fault;
        }

        memory.WriteInt64(ptr, value);
        return Success;
    }

    private static int RandomGet(Caller caller, int buf, int len)
    {
        var memory = Mem(caller);
        if (memory is null)
        {
            return Fault;
        }

        RandomNumberGenerator.Fill(memory.GetSpan(buf, len));
        return Success;
    }
}

/// <summary>Unwinds the guest when it calls proc_exit; the exit code is on the context.</summary>
internal sealed class GuestExitException : Exception
{
    public GuestExitException(int code)
        : base($"guest exited with code {code}") => Code = code;

    public GuestExitException()
    {
    }

    public GuestExitException(string message)
        : base(message)
    {
    }

    public GuestExitException(string message, Exception innerException)
        : base(message, innerException)
    {
    }

    public int Code { get; }
}
