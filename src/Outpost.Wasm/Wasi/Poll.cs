using System.Buffers.Binary;
using System.Diagnostics;
using Wasmtime;

namespace Outpost.Wasm.Wasi;

/// <summary>
/// poll_oneoff: what sleep(), nanosleep() and poll() become in a WASI guest. Stdio and files
/// are always ready (stdin in memory holds what it holds; files never block), so a
/// subscription on one returns at once; otherwise the guest sleeps until its earliest clock.
/// A sleep never outlasts the run: reaching the app's time limit ends the run as a timeout,
/// the same limit that stops a loop.
/// </summary>
internal static class Poll
{
    private const int SubscriptionSize = 48;
    private const int EventSize = 32;
    private const byte TagClock = 0;
    private const byte TagFdRead = 1;
    private const byte TagFdWrite = 2;
    private const ushort AbsoluteTime = 1;

    public static int OneOff(WasiContext context, Memory? memory, TimeProvider time, int input, int output, int count, int neventsPtr)
    {
        // At most as many subscriptions as fit in guest memory (so count * 48 cannot overflow).
        if (count <= 0 || count > int.MaxValue / SubscriptionSize)
        {
            return Errno.Inval;
        }

        if (WasiFiles.Guest(memory, input, count * SubscriptionSize, out var subscriptions) is { } fault
            || WasiFiles.Guest(memory, output, count * EventSize, out _) is not null
            || WasiFiles.Guest(memory, neventsPtr, 4, out _) is not null)
        {
            return Errno.Fault;
        }

        var now = Stopwatch.GetTimestamp();
        var clocks = new List<(ulong UserData, long Due)>();
        var ready = new List<(ulong UserData, ushort Error, byte Type, ulong Bytes)>();
        for (var i = 0; i < count; i++)
        {
            var sub = subscriptions.Slice(i * SubscriptionSize, SubscriptionSize);
            var userData = BinaryPrimitives.ReadUInt64LittleEndian(sub);
            var tag = sub[8];
            switch (tag)
            {
                case TagClock:
                    var id = BinaryPrimitives.ReadUInt32LittleEndian(sub[16..]);
                    var timeout = BinaryPrimitives.ReadUInt64LittleEndian(sub[24..]);
                    var flags = BinaryPrimitives.ReadUInt16LittleEndian(sub[40..]);
                    if (Due(time, id, timeout, (flags & AbsoluteTime) != 0, now) is { } due)
                    {
                        clocks.Add((userData, due));
                    }
                    else
                    {
                        ready.Add((userData, Errno.Inval, TagClock, 0));
                    }

                    break;
                case TagFdRead or TagFdWrite:
                    var fd = BinaryPrimitives.ReadInt32LittleEndian(sub[16..]);
                    var (error, bytes) = Readiness(context, fd, tag == TagFdRead);
                    ready.Add((userData, (ushort)error, tag, bytes));
                    break;
                default:
                    return Errno.Inval;
            }
        }

        if (ready.Count == 0)
        {
            // Only clocks: sleep to the earliest, but never past the run's deadline.
            var wake = clocks.Min(c => c.Due);
            var stop = Math.Min(wake, context.Deadline);
            for (var left = stop - Stopwatch.GetTimestamp(); left > 0; left = stop - Stopwatch.GetTimestamp())
            {
                var ms = (int)Math.Min(int.MaxValue, (left * 1000 + Stopwatch.Frequency - 1) / Stopwatch.Frequency);
                Thread.Sleep(Math.Max(ms, 1));
            }

            if (wake > context.Deadline)
            {
                context.TimedOut = true;
                throw new GuestTimeoutException();
            }
        }

        var after = Stopwatch.GetTimestamp();
        foreach (var (userData, due) in clocks)
        {
            if (due <= after)
            {
                ready.Add((userData, 0, TagClock, 0));
            }
        }

        Span<byte> events = memory!.GetSpan(output, count * EventSize);
        var n = 0;
        foreach (var (userData, error, type, bytes) in ready.Take(count))
        {
            var e = events.Slice(n++ * EventSize, EventSize);
            e.Clear();
            BinaryPrimitives.WriteUInt64LittleEndian(e, userData);
            BinaryPrimitives.WriteUInt16LittleEndian(e[8..], error);
            e[10] = type;
            BinaryPrimitives.WriteUInt64LittleEndian(e[16..], bytes);
        }

        BinaryPrimitives.WriteUInt32LittleEndian(memory.GetSpan(neventsPtr, 4), (uint)n);
        return Errno.Success;
    }

    /// <summary>When a clock subscription fires, as a Stopwatch timestamp; null for an unknown clock.</summary>
    private static long? Due(TimeProvider time, uint clock, ulong timeout, bool absolute, long now)
    {
        if (clock > 3)
        {
            return null;
        }

        var nanoseconds = (long)Math.Min(timeout, long.MaxValue / 2);
        if (absolute)
        {
            // Realtime deadlines are wall-clock nanoseconds; the others are the monotonic clock clock_time_get reports.
            var current = clock == 0
                ? (time.GetUtcNow() - DateTimeOffset.UnixEpoch).Ticks * 100L
                : (long)(now * (1_000_000_000.0 / Stopwatch.Frequency));
            nanoseconds = Math.Max(0, nanoseconds - current);
        }

        var ticks = (long)(nanoseconds * (Stopwatch.Frequency / 1_000_000_000.0));
        return ticks > long.MaxValue - now ? long.MaxValue : now + ticks;
    }

    /// <summary>An fd subscription's answer: stdio and files are always ready.</summary>
    private static (int Error, ulong Bytes) Readiness(WasiContext context, int fd, bool read)
    {
        switch (fd)
        {
            case 0:
                return read ? (0, (ulong)(context.StdinRemaining ?? 0)) : (Errno.Badf, 0UL);
            case 1 or 2:
                return read ? (Errno.Badf, 0UL) : (0, 0);
        }

        if (context.Files.Get(fd) is not { } file)
        {
            return (Errno.Badf, 0UL);
        }

        if (!read || file.IsDirectory)
        {
            return (0, 0UL);
        }

        var position = Posix.Lseek(file.Fd, 0, Posix.SeekCur);
        return Posix.Stat(file.Fd, out var stat) == 0 && position >= 0 ? (0, (ulong)Math.Max(0, (long)stat.Size - position)) : (0, 0);
    }
}

/// <summary>Unwinds the guest when a host call reaches the run's deadline.</summary>
internal sealed class GuestTimeoutException : Exception
{
    public GuestTimeoutException()
        : base("the run reached its time limit")
    {
    }

    public GuestTimeoutException(string message)
        : base(message)
    {
    }

    public GuestTimeoutException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}
