using System.Diagnostics;

namespace Outpost.Wasm.Components;

/// <summary>An input stream over bytes the host already holds (a request body, stdin, a response fetched).</summary>
internal sealed class InputStream(ReadOnlyMemory<byte> data)
{
    private int _at;

    /// <summary>Up to <paramref name="max"/> bytes; empty at the end (the caller answers closed).</summary>
    public ReadOnlySpan<byte> Read(ulong max)
    {
        var n = (int)Math.Min(max, (ulong)(data.Length - _at));
        var chunk = data.Span.Slice(_at, n);
        _at += n;
        return chunk;
    }

    public bool AtEnd => _at >= data.Length;
}

/// <summary>Where an output stream's bytes go; false when it takes no more (the guest then gets an error).</summary>
internal abstract class OutputTarget : IByteSink
{
    /// <summary>How many more bytes it takes now, or null when it takes none (closed or full).</summary>
    public abstract long? Room { get; }

    public abstract void Write(ReadOnlySpan<byte> bytes);

    /// <summary>Why it takes no more, for the error the guest gets.</summary>
    public virtual string Refusal => "the stream is closed";

    /// <summary>A write was refused for want of room (a response over its cap is then cut and counted).</summary>
    public virtual void Refused()
    {
    }
}

/// <summary>An output stream: stdout, stderr, a response body, a request body.</summary>
internal sealed class OutputStream(OutputTarget target)
{
    public OutputTarget Target => target;

    /// <summary>Set when the guest wrote past what the target takes: later writes fail at once.</summary>
    public bool Failed { get; set; }
}

/// <summary>wasi:io/error: a message for a failed stream operation.</summary>
internal sealed class IoError(string message)
{
    public string Message => message;

    /// <summary>The wasi:http error-code this error stands for, when it came from an HTTP body.</summary>
    public string? HttpErrorCase { get; init; }
}

/// <summary>
/// wasi:io/poll: something a guest can wait for. Everything the host holds in memory is ready at
/// once; a clock subscription is ready at its instant; an outbound request's future is ready when
/// it is made, since requests are made when sent.
/// </summary>
internal sealed class Pollable(long readyAt)
{
    /// <summary>Ready now.</summary>
    public static Pollable Ready() => new(0);

    /// <summary>The Stopwatch timestamp it is ready at.</summary>
    public long ReadyAt => readyAt;

    public bool IsReady => Stopwatch.GetTimestamp() >= readyAt;
}

/// <summary>wasi:io/error, poll and streams, over the run's resource table.</summary>
internal static unsafe class WasiIo
{
    public const string Version = "0.2.12";

    /// <summary>The most bytes one read returns or one check-write allows: the guest then comes back.</summary>
    private const int MaxChunk = 64 * 1024;

    public static List<WitInterface> Interfaces()
    {
        var all = new List<WitInterface>();
        all.Add(new WitInterface("wasi:io", "error", Version)
            .Resource("error", ResourceType.IoError)
            .Method("error", "to-debug-string", (ref HostCall c) => Values.String(c.Result(), c.Resource<IoError>(0, ResourceType.IoError).Message)));

        all.Add(new WitInterface("wasi:io", "poll", Version)
            .Resource("pollable", ResourceType.Pollable)
            .Method("pollable", "ready", (ref HostCall c) => Values.Bool(c.Result(), c.Resource<Pollable>(0, ResourceType.Pollable).IsReady))
            .Method("pollable", "block", (ref HostCall c) => Block(c.Run, [c.Resource<Pollable>(0, ResourceType.Pollable)]))
            .Func("poll", Poll));

        all.Add(new WitInterface("wasi:io", "streams", Version)
            .Resource("input-stream", ResourceType.InputStream)
            .Resource("output-stream", ResourceType.OutputStream)
            .Method("input-stream", "read", Read)
            .Method("input-stream", "blocking-read", Read)
            .Method("input-stream", "skip", Skip)
            .Method("input-stream", "blocking-skip", Skip)
            .Method("input-stream", "subscribe", (ref HostCall c) =>
            {
                c.Resource<InputStream>(0, ResourceType.InputStream);
                c.NewResource(c.Result(), ResourceType.Pollable, Pollable.Ready());
            })
            .Method("output-stream", "check-write", CheckWrite)
            .Method("output-stream", "write", Write)
            .Method("output-stream", "blocking-write-and-flush", Write)
            .Method("output-stream", "flush", Flush)
            .Method("output-stream", "blocking-flush", Flush)
            .Method("output-stream", "subscribe", (ref HostCall c) =>
            {
                c.Resource<OutputStream>(0, ResourceType.OutputStream);
                c.NewResource(c.Result(), ResourceType.Pollable, Pollable.Ready());
            })
            .Method("output-stream", "write-zeroes", WriteZeroes)
            .Method("output-stream", "blocking-write-zeroes-and-flush", WriteZeroes)
            .Method("output-stream", "splice", Splice)
            .Method("output-stream", "blocking-splice", Splice));
        return all;
    }

    /// <summary>Waits for the earliest of <paramref name="pollables"/>, within the run's time.</summary>
    private static void Block(ComponentRun run, IReadOnlyList<Pollable> pollables)
    {
        var earliest = long.MaxValue;
        foreach (var p in pollables)
        {
            earliest = Math.Min(earliest, p.ReadyAt);
        }

        var wait = Stopwatch.GetElapsedTime(Stopwatch.GetTimestamp(), earliest);
        if (wait <= TimeSpan.Zero)
        {
            return;
        }

        var left = run.TimeLeft();
        if (wait >= left)
        {
            Thread.Sleep(left);
            run.TimedOut = true;
            throw new Wasi.GuestTimeoutException();
        }

        Thread.Sleep(wait);
    }

    private static void Poll(ref HostCall c)
    {
        var list = c.Raw(0);
        if (list->Kind != Val.List || list->Vec.Size == 0)
        {
            throw new GuestTrapException("poll needs a non-empty list of pollables");
        }

        var count = (int)list->Vec.Size;
        var pollables = new Pollable[count];
        for (var i = 0; i < count; i++)
        {
            pollables[i] = c.ResourceIn<Pollable>(list->Vec.Data + i, ResourceType.Pollable, take: false);
        }

        Block(c.Run, pollables);
        var ready = new List<uint>(count);
        for (var i = 0; i < count; i++)
        {
            if (pollables[i].IsReady)
            {
                ready.Add((uint)i);
            }
        }

        Values.List(c.Result(), ready.Count, static (slot, i, state) => Values.U32(slot, ((List<uint>)state!)[i]), ready);
    }

    private static void Read(ref HostCall c)
    {
        var stream = c.Resource<InputStream>(0, ResourceType.InputStream);
        var max = Math.Min(c.U64(1), MaxChunk);
        if (stream.AtEnd)
        {
            Closed(c.Result());
            return;
        }

        Val bytes = default;
        Values.Bytes(&bytes, stream.Read(max));
        Values.Ok(c.Result(), &bytes);
    }

    private static void Skip(ref HostCall c)
    {
        var stream = c.Resource<InputStream>(0, ResourceType.InputStream);
        if (stream.AtEnd)
        {
            Closed(c.Result());
            return;
        }

        Val n = default;
        Values.U64(&n, (ulong)stream.Read(c.U64(1)).Length);
        Values.Ok(c.Result(), &n);
    }

    /// <summary>stream-error.closed: the end of an input, or an output that takes nothing more.</summary>
    public static void Closed(Val* slot)
    {
        Val closed = default;
        Values.Variant(&closed, "closed");
        Values.Err(slot, &closed);
    }

    /// <summary>stream-error.last-operation-failed(error): a write the target refused.</summary>
    private static void Failed(ref HostCall c, string message)
    {
        Val error = default;
        c.NewResource(&error, ResourceType.IoError, new IoError(message));
        Val failed = default;
        Values.Variant(&failed, "last-operation-failed", &error);
        Values.Err(c.Result(), &failed);
    }

    private static void CheckWrite(ref HostCall c)
    {
        var stream = c.Resource<OutputStream>(0, ResourceType.OutputStream);
        if (stream.Failed || stream.Target.Room is not { } room)
        {
            Failed(ref c, stream.Target.Refusal);
            return;
        }

        Val n = default;
        // Never 0 while open: a guest waiting for room would wait forever, since nothing drains here.
        Values.U64(&n, (ulong)Math.Clamp(room, 1, MaxChunk));
        Values.Ok(c.Result(), &n);
    }

    private static void Write(ref HostCall c)
    {
        var stream = c.Resource<OutputStream>(0, ResourceType.OutputStream);
        var list = c.Raw(1);
        if (list->Kind != Val.List)
        {
            throw new GuestTrapException("write takes a list<u8>");
        }

        if (stream.Failed || stream.Target.Room is not { } room || (long)list->Vec.Size > room)
        {
            stream.Failed = true;
            stream.Target.Refused();
            Failed(ref c, stream.Target.Refusal);
            return;
        }

        c.AppendBytes(1, stream.Target);
        Values.Ok(c.Result());
    }

    private static void Flush(ref HostCall c)
    {
        var stream = c.Resource<OutputStream>(0, ResourceType.OutputStream);
        if (stream.Failed)
        {
            Failed(ref c, stream.Target.Refusal);
            return;
        }

        Values.Ok(c.Result());
    }

    private static void WriteZeroes(ref HostCall c)
    {
        var stream = c.Resource<OutputStream>(0, ResourceType.OutputStream);
        var count = c.U64(1);
        if (stream.Failed || stream.Target.Room is not { } room || count > (ulong)room)
        {
            stream.Failed = true;
            stream.Target.Refused();
            Failed(ref c, stream.Target.Refusal);
            return;
        }

        Span<byte> zeroes = stackalloc byte[4096];
        zeroes.Clear();
        for (var left = (long)count; left > 0; left -= zeroes.Length)
        {
            stream.Target.Write(zeroes[..(int)Math.Min(left, zeroes.Length)]);
        }

        Values.Ok(c.Result());
    }

    private static void Splice(ref HostCall c)
    {
        var output = c.Resource<OutputStream>(0, ResourceType.OutputStream);
        var input = c.Resource<InputStream>(1, ResourceType.InputStream);
        if (input.AtEnd)
        {
            Closed(c.Result());
            return;
        }

        if (output.Failed || output.Target.Room is not { } room)
        {
            Failed(ref c, output.Target.Refusal);
            return;
        }

        var chunk = input.Read(Math.Min(c.U64(2), (ulong)Math.Min(room, MaxChunk)));
        output.Target.Write(chunk);
        Val n = default;
        Values.U64(&n, (ulong)chunk.Length);
        Values.Ok(c.Result(), &n);
    }
}
