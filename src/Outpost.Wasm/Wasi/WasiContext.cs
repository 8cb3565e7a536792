using System.Buffers;
using System.Text;

namespace Outpost.Wasm.Wasi;

/// <summary>
/// One guest run's view of the world: its args, environment, stdin and output (in memory for
/// requests and events, the terminal's streams for `outpost wasm run`), and the directories
/// its app mounts. Nothing else (sockets, other files) exists for the guest.
/// </summary>
internal sealed class WasiContext : IDisposable
{
    private readonly StringBlock _args;
    private readonly StringBlock _env;
    private readonly ReadOnlyMemory<byte> _stdin;
    private readonly Stream? _stdinStream;
    private int _stdinPosition;
    private FdTable? _files;
    private List<string>? _notes;

    public WasiContext(IEnumerable<string> args, IEnumerable<KeyValuePair<string, string>> env, ReadOnlyMemory<byte> stdin, int maxStdoutBytes, int maxStderrBytes)
        : this(StringBlock.Of(args), StringBlock.OfPairs(env), stdin, maxStdoutBytes, maxStderrBytes)
    {
    }

    /// <summary>With the arguments and environment already laid out for the guest; the context disposes them with itself.</summary>
    public WasiContext(StringBlock args, StringBlock env, ReadOnlyMemory<byte> stdin, int maxStdoutBytes, int maxStderrBytes)
    {
        _args = args;
        _env = env;
        _stdin = stdin;
        Stdout = new CappedBuffer(maxStdoutBytes);
        Stderr = new CappedBuffer(maxStderrBytes);
    }

    /// <summary>A command's context: stdin read from <paramref name="stdin"/> as the guest asks, output written through.</summary>
    public WasiContext(IEnumerable<string> args, IEnumerable<KeyValuePair<string, string>> env, Stream stdin, WasiOutput stdout, WasiOutput stderr)
    {
        _args = StringBlock.Of(args);
        _env = StringBlock.OfPairs(env);
        _stdinStream = stdin;
        Stdout = stdout;
        Stderr = stderr;
    }

    /// <summary>The guest's exported memory, looked up once per run rather than on every call.</summary>
    public Wasmtime.Memory? Memory { get; set; }

    public WasiOutput Stdout { get; }

    public WasiOutput Stderr { get; }

    /// <summary>The output captured in memory (requests and events), for reading once the run is over.</summary>
    public CappedBuffer CapturedStdout => (CappedBuffer)Stdout;

    /// <inheritdoc cref="CapturedStdout"/>
    public CappedBuffer CapturedStderr => (CappedBuffer)Stderr;

    /// <summary>The directories the guest sees as preopens; null or empty: none.</summary>
    public WasiMounts? Mounts { get; init; }

    /// <summary>The run's open files, made on the first file call (a run that touches no file pays nothing).</summary>
    public FdTable Files => _files ??= new FdTable(Mounts);

    /// <summary>What the host has to say about the run for the app's log (a full volume, a refused path).</summary>
    public IReadOnlyList<string> Notes => (IReadOnlyList<string>?)_notes ?? [];

    public void Note(string message) => (_notes ??= []).Add(message);

    /// <summary>Set when a write was refused for passing a volume's size limit.</summary>
    public bool VolumeFull { get; set; }

    /// <summary>The models load_by_name finds, by the names the app declares them under (null: none).</summary>
    public IReadOnlyDictionary<string, Nn.NnModel>? Models { get; init; }

    /// <summary>The run's WASI-NN graphs and execution contexts, made on the first call.</summary>
    public Nn.NnState? Nn { get; set; }

    /// <summary>Set when a host call (a sleep) ran into the run's deadline: the run timed out.</summary>
    public bool TimedOut { get; set; }

    /// <summary>Who is running and what it may call in the outpost module; null grants nothing.</summary>
    public Outpost.Wasm.Host.HostGrant? Grant { get; init; }

    /// <summary>When the run's time is up (a Stopwatch timestamp): host calls that wait stop waiting by then.</summary>
    public long Deadline { get; set; } = long.MaxValue;

    /// <summary>The last response an http-out request got in this run, for the guest to read.</summary>
    public Outpost.Wasm.Host.HttpOutResponse? LastHttpResponse { get; set; }

    /// <summary>Set when the guest called proc_exit.</summary>
    public int? ExitCode { get; set; }

    public StringBlock Args => _args;

    public StringBlock Env => _env;

    /// <summary>Bytes stdin still holds, when known (in memory); null for a stream.</summary>
    public long? StdinRemaining => _stdinStream is null ? _stdin.Length - _stdinPosition : null;

    public int ReadStdin(Span<byte> destination)
    {
        if (_stdinStream is not null)
        {
            return _stdinStream.Read(destination);
        }

        var remaining = _stdin.Span[_stdinPosition..];
        var n = Math.Min(remaining.Length, destination.Length);
        remaining[..n].CopyTo(destination);
        _stdinPosition += n;
        return n;
    }

    /// <summary>Closes what the guest left open.</summary>
    public void Dispose()
    {
        _files?.Dispose();
        Nn?.Dispose();
        _args.Dispose();
        _env.Dispose();
    }
}

/// <summary>Where a guest's stdout or stderr goes.</summary>
internal abstract class WasiOutput
{
    /// <summary>Takes what fits; false when it did not all fit.</summary>
    public abstract bool Write(ReadOnlySpan<byte> data);

    /// <summary>True once a write did not fit.</summary>
    public virtual bool Overflowed => false;

    /// <summary>The most it holds.</summary>
    public virtual int Capacity => int.MaxValue;
}

/// <summary>Output written straight through to a stream (a terminal), as a command's is.</summary>
internal sealed class StreamOutput(Stream stream) : WasiOutput
{
    public override bool Write(ReadOnlySpan<byte> data)
    {
        stream.Write(data);
        stream.Flush();
        return true;
    }
}

/// <summary>An output buffer that refuses to grow past a cap, so a guest cannot flood the host; made on the first write.</summary>
internal sealed class CappedBuffer(int capacity) : WasiOutput
{
    private ArrayBufferWriter<byte>? _buffer;
    private bool _overflowed;

    public override int Capacity { get; } = capacity;

    public override bool Overflowed => _overflowed;

    public long Length => _buffer?.WrittenCount ?? 0;

    /// <summary>Appends what fits; false (and Overflowed) when it did not all fit.</summary>
    public override bool Write(ReadOnlySpan<byte> data)
    {
        var buffer = _buffer ??= new ArrayBufferWriter<byte>(Math.Clamp(data.Length, 256, Math.Max(Capacity, 1)));
        var room = Capacity - buffer.WrittenCount;
        if (data.Length > room)
        {
            buffer.Write(data[..Math.Max(room, 0)]);
            _overflowed = true;
            return false;
        }

        buffer.Write(data);
        return true;
    }

    public ReadOnlyMemory<byte> WrittenMemory => _buffer?.WrittenMemory ?? ReadOnlyMemory<byte>.Empty;

    public string ToText() => Encoding.UTF8.GetString(WrittenMemory.Span);
}
