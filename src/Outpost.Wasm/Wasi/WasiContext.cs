using System.Buffers;
using System.Text;

namespace Outpost.Wasm.Wasi;

/// <summary>
/// One guest run's view of the world: its args, environment, stdin and captured output,
/// all in memory. Nothing else (files, sockets) exists for the guest.
/// </summary>
internal sealed class WasiContext
{
    private readonly byte[][] _args;
    private readonly byte[][] _env;
    private readonly ReadOnlyMemory<byte> _stdin;
    private int _stdinPosition;

    public WasiContext(IEnumerable<string> args, IEnumerable<KeyValuePair<string, string>> env, ReadOnlyMemory<byte> stdin, int maxStdoutBytes, int maxStderrBytes)
        : this(args, [], env, stdin, maxStdoutBytes, maxStderrBytes)
    {
    }

    /// <summary>With <paramref name="encodedEnv"/> already in "K=V\0" form (an app's fixed environment, encoded once).</summary>
    public WasiContext(IEnumerable<string> args, IReadOnlyList<byte[]> encodedEnv, IEnumerable<KeyValuePair<string, string>> env, ReadOnlyMemory<byte> stdin, int maxStdoutBytes, int maxStderrBytes)
    {
        _args = [.. args.Select(a => Encoding.UTF8.GetBytes(a + "\0"))];
        var all = new List<byte[]>(encodedEnv);
        foreach (var (key, value) in env)
        {
            all.Add(Encode(key, value));
        }

        _env = [.. all];
        _stdin = stdin;
        Stdout = new CappedBuffer(maxStdoutBytes);
        Stderr = new CappedBuffer(maxStderrBytes);
    }

    /// <summary>"K=V\0" in UTF-8, as environ_get hands it to the guest.</summary>
    public static byte[] Encode(string key, string value)
    {
        var bytes = new byte[Encoding.UTF8.GetByteCount(key) + Encoding.UTF8.GetByteCount(value) + 2];
        var n = Encoding.UTF8.GetBytes(key, bytes);
        bytes[n++] = (byte)'=';
        Encoding.UTF8.GetBytes(value, bytes.AsSpan(n));
        return bytes;
    }

    /// <summary>The guest's exported memory, looked up once per run rather than on every call.</summary>
    public Wasmtime.Memory? Memory { get; set; }

    public CappedBuffer Stdout { get; }

    public CappedBuffer Stderr { get; }

    /// <summary>Who is running and what it may call in the outpost module; null grants nothing.</summary>
    public Outpost.Wasm.Host.HostGrant? Grant { get; init; }

    /// <summary>When the run's time is up (a Stopwatch timestamp): host calls that wait stop waiting by then.</summary>
    public long Deadline { get; set; } = long.MaxValue;

    /// <summary>The last response an http-out request got in this run, for the guest to read.</summary>
    public Outpost.Wasm.Host.HttpOutResponse? LastHttpResponse { get; set; }

    /// <summary>Set when the guest called proc_exit.</summary>
    public int? ExitCode { get; set; }

    public IReadOnlyList<byte[]> Args => _args;

    public IReadOnlyList<byte[]> Env => _env;

    public int ReadStdin(Span<byte> destination)
    {
        var remaining = _stdin.Span[_stdinPosition..];
        var n = Math.Min(remaining.Length, destination.Length);
        remaining[..n].CopyTo(destination);
        _stdinPosition += n;
        return n;
    }
}

/// <summary>An output buffer that refuses to grow past a cap, so a guest cannot flood the host.</summary>
internal sealed class CappedBuffer(int capacity)
{
    private readonly ArrayBufferWriter<byte> _buffer = new(256);

    public int Capacity { get; } = capacity;

    public bool Overflowed { get; private set; }

    public long Length => _buffer.WrittenCount;

    /// <summary>Appends what fits; false (and Overflowed) when it did not all fit.</summary>
    public bool Write(ReadOnlySpan<byte> data)
    {
        var room = Capacity - _buffer.WrittenCount;
        if (data.Length > room)
        {
            _buffer.Write(data[..Math.Max(room, 0)]);
            Overflowed = true;
            return false;
        }

        _buffer.Write(data);
        return true;
    }

    public ReadOnlyMemory<byte> WrittenMemory => _buffer.WrittenMemory;

    public string ToText() => Encoding.UTF8.GetString(WrittenMemory.Span);
}
