using System.Buffers.Binary;
using System.Security.Cryptography;
using Wasmtime;

namespace Outpost.Wasm.Wasi;

/// <summary>
/// Outpost's own implementation of wasi_snapshot_preview1, defined once on the shared
/// linker. Stdio reads and writes the run's <see cref="WasiContext"/> buffers (in memory per
/// request, faster than a WASI config with files); files live in the app's mounts
/// (<see cref="WasiFiles"/>); poll_oneoff sleeps within the run's deadline. Sockets do not
/// exist: every socket call fails with NOTCAPABLE.
/// </summary>
internal static class WasiPreview1
{
    public const string ModuleName = "wasi_snapshot_preview1";

    private const int Success = Errno.Success;
    private const int Badf = Errno.Badf;
    private const int Fault = Errno.Fault;
    private const int Inval = Errno.Inval;
    private const int Io = Errno.Io;
    private const int Notcapable = Errno.Notcapable;

    private static readonly ValueKind I32 = ValueKind.Int32;

    /// <summary>Every function this host provides; a module importing anything else from WASI is rejected.</summary>
    public static IReadOnlySet<string> Functions { get; } = new HashSet<string>(StringComparer.Ordinal)
    {
        "args_get", "args_sizes_get", "environ_get", "environ_sizes_get", "clock_res_get", "clock_time_get",
        "fd_advise", "fd_allocate", "fd_close", "fd_datasync", "fd_fdstat_get", "fd_fdstat_set_flags", "fd_fdstat_set_rights",
        "fd_filestat_get", "fd_filestat_set_size", "fd_filestat_set_times", "fd_pread", "fd_prestat_get", "fd_prestat_dir_name",
        "fd_pwrite", "fd_read", "fd_readdir", "fd_renumber", "fd_seek", "fd_sync", "fd_tell", "fd_write",
        "path_create_directory", "path_filestat_get", "path_filestat_set_times", "path_link", "path_open", "path_readlink",
        "path_remove_directory", "path_rename", "path_symlink", "path_unlink_file",
        "poll_oneoff", "proc_exit", "proc_raise", "random_get", "sched_yield",
        "sock_accept", "sock_recv", "sock_send", "sock_shutdown",
    };

    // No sockets: a later capability may grant them; until then each call fails cleanly.
    private static readonly Dictionary<string, ValueKind[]> Sockets = new(StringComparer.Ordinal)
    {
        ["sock_accept"] = [I32, I32, I32],
        ["sock_recv"] = [I32, I32, I32, I32, I32, I32],
        ["sock_send"] = [I32, I32, I32, I32, I32],
        ["sock_shutdown"] = [I32, I32],
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
            fd > 2 ? WasiFiles.WriteFile(Ctx(c), Mem(c), fd, iovs, iovsLen, -1, nwritten) : FdWrite(c, fd, iovs, iovsLen, nwritten));
        linker.DefineFunction(ModuleName, "fd_read", (Caller c, int fd, int iovs, int iovsLen, int nread) =>
            fd > 2 ? WasiFiles.ReadFile(Ctx(c), Mem(c), fd, iovs, iovsLen, -1, nread) : FdRead(c, fd, iovs, iovsLen, nread));
        linker.DefineFunction(ModuleName, "fd_fdstat_get", (Caller c, int fd, int buf) => FdstatGet(c, fd, buf));
        linker.DefineFunction(ModuleName, "proc_exit", (Caller c, int code) =>
        {
            Ctx(c).ExitCode = code;
            throw new GuestExitException(code);
        });
        linker.DefineFunction(ModuleName, "proc_raise", (Caller c, int signal) => Errno.Notsup);
        linker.DefineFunction(ModuleName, "clock_time_get", (Caller c, int id, long precision, int resultPtr) =>
            ClockTimeGet(c, time, id, resultPtr));
        linker.DefineFunction(ModuleName, "clock_res_get", (Caller c, int id, int resultPtr) =>
            id is >= 0 and <= 3 ? WriteU64(c, resultPtr, 1_000) : Inval);
        linker.DefineFunction(ModuleName, "random_get", (Caller c, int buf, int len) => RandomGet(c, buf, len));
        linker.DefineFunction(ModuleName, "sched_yield", () =>
        {
            Thread.Yield();
            return Success;
        });
        linker.DefineFunction(ModuleName, "poll_oneoff", (Caller c, int input, int output, int count, int neventsPtr) =>
            Poll.OneOff(Ctx(c), Mem(c), time, input, output, count, neventsPtr));
        WasiFiles.Define(linker, ModuleName, Ctx, MemoryOf);

        foreach (var (name, parameters) in Sockets)
        {
            linker.DefineFunction(ModuleName, name, (Caller _, ReadOnlySpan<ValueBox> _, Span<ValueBox> results) => results[0] = Notcapable,
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

    private static int SizesGet(Caller caller, StringBlock strings, int countPtr, int sizePtr)
    {
        var memory = Mem(caller);
        if (memory is null)
        {
            return Fault;
        }

        memory.WriteInt32(countPtr, strings.Count);
        memory.WriteInt32(sizePtr, strings.Length);
        return Success;
    }

    /// <summary>args_get and environ_get: the pointers and the strings, each written in one piece.</summary>
    private static int ListGet(Caller caller, StringBlock strings, int ptrs, int buf)
    {
        var memory = Mem(caller);
        if (memory is null)
        {
            return Fault;
        }

        if (strings.Count > 0)
        {
            strings.CopyTo(memory.GetSpan(ptrs, strings.Count * 4), memory.GetSpan(buf, strings.Length), buf);
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
        if (fd < 0)
        {
            return Badf;
        }

        if (WasiFiles.Guest(Mem(caller), buf, 24, out var span) is { } fault)
        {
            return fault;
        }

        if (fd > 2)
        {
            return WasiFiles.Fdstat(Ctx(caller).Files, span, fd);
        }

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
