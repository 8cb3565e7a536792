using System.Buffers;
using System.Text;

namespace Outpost.Wasm.Components.Http;

/// <summary>wasi:http fields (headers and trailers): names as given, values as bytes, in order.</summary>
internal sealed class Fields
{
    /// <summary>Headers a guest may not set, as Wasmtime's wasi-http refuses them: the host owns the connection.</summary>
    private static readonly HashSet<string> Forbidden = new(StringComparer.OrdinalIgnoreCase)
    {
        "Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Connection", "Transfer-Encoding", "Upgrade", "Host", "HTTP2-Settings",
    };

    public List<KeyValuePair<string, byte[]>> Entries { get; } = [];

    /// <summary>Set on headers the guest received or handed over: set, append and delete then fail.</summary>
    public bool Immutable { get; set; }

    public Fields Clone()
    {
        var copy = new Fields();
        copy.Entries.AddRange(Entries);
        return copy;
    }

    /// <summary>The header-error case for adding <paramref name="name"/>: <paramref name="value"/>, or null when fine.</summary>
    public string? Check(string name, ReadOnlySpan<byte> value)
    {
        if (Immutable)
        {
            return "immutable";
        }

        if (name.Length == 0 || !name.All(IsTokenChar) || value.ContainsAny((byte)'\r', (byte)'\n', (byte)0))
        {
            return "invalid-syntax";
        }

        return Forbidden.Contains(name) ? "forbidden" : null;
    }

    public static bool IsTokenChar(char c) => char.IsAsciiLetterOrDigit(c) || "!#$%&'*+-.^_`|~".Contains(c, StringComparison.Ordinal);

    public IEnumerable<byte[]> Get(string name) => Entries.Where(e => e.Key.Equals(name, StringComparison.OrdinalIgnoreCase)).Select(e => e.Value);

    public void Remove(string name) => Entries.RemoveAll(e => e.Key.Equals(name, StringComparison.OrdinalIgnoreCase));

    /// <summary>Headers as text, for the gateway's response or an outbound request (values decoded as Latin-1, as HTTP allows).</summary>
    public IEnumerable<KeyValuePair<string, string>> AsText() =>
        Entries.Select(e => new KeyValuePair<string, string>(e.Key, Encoding.Latin1.GetString(e.Value)));

    public static Fields From(IEnumerable<KeyValuePair<string, string>> headers, bool immutable)
    {
        var fields = new Fields { Immutable = immutable };
        foreach (var (name, value) in headers)
        {
            fields.Entries.Add(new(name.ToLowerInvariant(), Encoding.Latin1.GetBytes(value)));
        }

        return fields;
    }
}

/// <summary>The request a proxy component handles: everything read before it runs.</summary>
internal sealed class IncomingRequest
{
    public required string Method { get; init; }

    public required string PathWithQuery { get; init; }

    /// <summary>"http" or "https".</summary>
    public string Scheme { get; init; } = "http";

    public string Authority { get; init; } = "";

    public required Fields Headers { get; init; }

    public ReadOnlyMemory<byte> Body { get; init; }

    public bool Consumed { get; set; }
}

/// <summary>A body the guest reads: of the request it handles, or of a response it fetched.</summary>
internal sealed class IncomingBody(ReadOnlyMemory<byte> bytes)
{
    public ReadOnlyMemory<byte> Bytes => bytes;

    public bool StreamTaken { get; set; }
}

/// <summary>future-trailers: ready at once, never any trailers (the gateway does not pass them on).</summary>
internal sealed class FutureTrailers
{
    public bool Taken { get; set; }
}

/// <summary>
/// The response body a guest writes: kept up to the app's maxResponseBytes; a write past it fails
/// (the guest sees last-operation-failed) and the request is answered 500 and counted as a limit hit.
/// </summary>
internal sealed class ResponseBody(int capacity) : OutputTarget
{
    private readonly ArrayBufferWriter<byte> _buffer = new(4096);

    public bool Overflowed { get; private set; }

    public int Capacity => capacity;

    public ReadOnlyMemory<byte> Written => _buffer.WrittenMemory;

    public override long? Room => Overflowed ? null : capacity - _buffer.WrittenCount;

    public override string Refusal => $"response body larger than maxResponseBytes ({capacity} bytes)";

    public override void Write(ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length > capacity - _buffer.WrittenCount)
        {
            Overflowed = true;
            return;
        }

        _buffer.Write(bytes);
    }

    public override void Refused() => Overflowed = true;
}

/// <summary>The body of an outbound request, kept until the request is sent.</summary>
internal sealed class RequestBody(int capacity) : OutputTarget
{
    private readonly ArrayBufferWriter<byte> _buffer = new(256);

    public ReadOnlyMemory<byte> Written => _buffer.WrittenMemory;

    public override long? Room => capacity - _buffer.WrittenCount is > 0 and var room ? room : null;

    public override string Refusal => $"request body larger than {capacity} bytes";

    public override void Write(ReadOnlySpan<byte> bytes) => _buffer.Write(bytes);
}

/// <summary>An outgoing body: its stream may be taken once, then it is finished (or dropped unfinished).</summary>
internal sealed class OutgoingBody(OutputTarget target)
{
    public OutputTarget Target => target;

    public bool StreamTaken { get; set; }

    public bool Finished { get; set; }
}

/// <summary>The response a guest builds.</summary>
internal sealed class OutgoingResponse(Fields headers, int maxBodyBytes)
{
    public ushort Status { get; set; } = 200;

    public Fields Headers { get; } = headers;

    public OutgoingBody Body { get; } = new(new ResponseBody(maxBodyBytes));

    public bool BodyTaken { get; set; }
}

/// <summary>The handle through which the guest answers; set at most once.</summary>
internal sealed class ResponseOutparam;

/// <summary>What the guest answered: a response, an error, or (until it does) nothing.</summary>
internal sealed class ResponseState
{
    public OutgoingResponse? Response { get; set; }

    /// <summary>The error-code case when the guest answered with an error rather than a response.</summary>
    public string? Error { get; set; }

    public bool IsSet => Response is not null || Error is not null;
}

/// <summary>An outbound request being built by the guest (wasi:http/outgoing-handler).</summary>
internal sealed class OutgoingRequest(Fields headers)
{
    public string Method { get; set; } = "GET";

    public string? PathWithQuery { get; set; }

    public string? Scheme { get; set; }

    public string? Authority { get; set; }

    public Fields Headers { get; } = headers;

    public OutgoingBody Body { get; } = new(new RequestBody(1024 * 1024));

    public bool BodyTaken { get; set; }
}

/// <summary>Timeouts the guest asks for, in nanoseconds.</summary>
internal sealed class RequestOptions
{
    public ulong? ConnectTimeout { get; set; }

    public ulong? FirstByteTimeout { get; set; }

    public ulong? BetweenBytesTimeout { get; set; }
}

/// <summary>A response fetched from outside: status, headers, body.</summary>
internal sealed class IncomingResponse(ushort status, Fields headers, ReadOnlyMemory<byte> body)
{
    public ushort Status => status;

    public Fields Headers => headers;

    public ReadOnlyMemory<byte> Body => body;

    public bool Consumed { get; set; }
}

/// <summary>
/// An outbound request's future. The request goes out when the guest first waits on it or asks
/// for it (not at handle(), so a body the guest writes after handle() is sent too).
/// </summary>
internal sealed class FutureIncomingResponse(Func<(IncomingResponse? Response, string? ErrorCase, string? Message)> send)
{
    private (IncomingResponse? Response, string? ErrorCase, string? Message)? _result;

    public (IncomingResponse? Response, string? ErrorCase, string? Message) Resolve() => _result ??= send();

    public bool Taken { get; set; }
}
