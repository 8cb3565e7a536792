using System.Diagnostics;
using Outpost.Wasm.Host;
using Outpost.Wasm.Wasi;

namespace Outpost.Wasm.Components;

/// <summary>The host resource types, numbered as Wasmtime's host resource types are keyed.</summary>
internal enum ResourceType : uint
{
    IoError = 1,
    Pollable,
    InputStream,
    OutputStream,
    Fields,
    IncomingRequest,
    OutgoingRequest,
    RequestOptions,
    ResponseOutparam,
    IncomingResponse,
    IncomingBody,
    FutureTrailers,
    OutgoingResponse,
    OutgoingBody,
    FutureIncomingResponse,
    TerminalInput,
    TerminalOutput,
    Descriptor,
    DirectoryEntryStream,
    Network,
    TcpSocket,
    UdpSocket,
    IncomingDatagramStream,
    OutgoingDatagramStream,
    ResolveAddressStream,
}

internal static class ResourceTypes
{
    /// <summary>The WIT name of a resource type, for messages.</summary>
    public static string Name(this ResourceType type) => type switch
    {
        ResourceType.IoError => "error",
        ResourceType.Pollable => "pollable",
        ResourceType.InputStream => "input-stream",
        ResourceType.OutputStream => "output-stream",
        ResourceType.Fields => "fields",
        ResourceType.IncomingRequest => "incoming-request",
        ResourceType.OutgoingRequest => "outgoing-request",
        ResourceType.RequestOptions => "request-options",
        ResourceType.ResponseOutparam => "response-outparam",
        ResourceType.IncomingResponse => "incoming-response",
        ResourceType.IncomingBody => "incoming-body",
        ResourceType.FutureTrailers => "future-trailers",
        ResourceType.OutgoingResponse => "outgoing-response",
        ResourceType.OutgoingBody => "outgoing-body",
        ResourceType.FutureIncomingResponse => "future-incoming-response",
        ResourceType.TerminalInput => "terminal-input",
        ResourceType.TerminalOutput => "terminal-output",
        ResourceType.Descriptor => "descriptor",
        ResourceType.DirectoryEntryStream => "directory-entry-stream",
        ResourceType.Network => "network",
        ResourceType.TcpSocket => "tcp-socket",
        ResourceType.UdpSocket => "udp-socket",
        ResourceType.IncomingDatagramStream => "incoming-datagram-stream",
        ResourceType.OutgoingDatagramStream => "outgoing-datagram-stream",
        ResourceType.ResolveAddressStream => "resolve-address-stream",
        _ => type.ToString(),
    };
}

/// <summary>
/// The host side of one run's resources: rep → (type, object). Wasmtime checks every handle a
/// guest passes against the guest's own table (a dropped or forged handle traps); this table then
/// checks the type again and holds the objects. It lives and dies with the run's store, so one
/// request can never reach another's body or response.
/// </summary>
internal sealed class ResourceTable
{
    /// <summary>More live resources than any honest request needs: a guest leaking them in a loop traps.</summary>
    public const int MaxEntries = 64 * 1024;

    private readonly Dictionary<uint, (ResourceType Type, object Value)> _entries = [];
    private uint _next = 1;

    public int Count => _entries.Count;

    public uint Add(ResourceType type, object value)
    {
        if (_entries.Count >= MaxEntries)
        {
            throw new GuestTrapException($"more than {MaxEntries} live resources in one run");
        }

        var rep = _next++;
        _entries.Add(rep, (type, value));
        return rep;
    }

    public T Get<T>(uint rep, ResourceType type)
        where T : class
    {
        if (!_entries.TryGetValue(rep, out var entry) || entry.Type != type || entry.Value is not T value)
        {
            throw new GuestTrapException($"{type.Name()} {rep} is not live in this run");
        }

        return value;
    }

    /// <summary>Removes and returns it: an <c>own</c> the guest handed back to the host.</summary>
    public T Take<T>(uint rep, ResourceType type)
        where T : class
    {
        var value = Get<T>(rep, type);
        _entries.Remove(rep);
        return value;
    }

    /// <summary>The guest dropped its own handle.</summary>
    public void Drop(uint rep, ResourceType type)
    {
        if (_entries.TryGetValue(rep, out var entry) && entry.Type == type)
        {
            _entries.Remove(rep);
        }
    }
}

/// <summary>
/// One run of a component: a request through wasi:http/incoming-handler, or a command through
/// wasi:cli/run. The store's data; host functions reach it through <see cref="HostCall.Run"/>.
/// </summary>
internal sealed class ComponentRun
{
    public ComponentRun(IReadOnlyList<KeyValuePair<string, string>> environment, IReadOnlyList<string> arguments, ReadOnlyMemory<byte> stdin, int maxOutputBytes)
    {
        Environment = environment;
        Arguments = arguments;
        Stdin = stdin;
        Stdout = new CappedBuffer(maxOutputBytes);
        Stderr = new CappedBuffer(64 * 1024);
    }

    /// <summary>The run whose guest this thread is in: host calls come on the thread that called the guest.</summary>
    [ThreadStatic]
    private static ComponentRun? _current;

    public static ComponentRun Of(nint context) => _current ?? (ComponentRun)StoreData.Target(Native.wasmtime_context_get_data(context));

    /// <summary>Marks this thread as running <paramref name="run"/>'s guest until the returned scope ends.</summary>
    public static CurrentRun Enter(ComponentRun run)
    {
        var previous = _current;
        _current = run;
        return new CurrentRun(previous);
    }

    /// <summary>Restores the thread's previous run.</summary>
    public readonly struct CurrentRun(ComponentRun? previous) : IDisposable
    {
        public void Dispose() => _current = previous;
    }

    public ResourceTable Table { get; } = new();

    public IReadOnlyList<KeyValuePair<string, string>> Environment { get; }

    public IReadOnlyList<string> Arguments { get; }

    public ReadOnlyMemory<byte> Stdin { get; }

    public CappedBuffer Stdout { get; }

    public CappedBuffer Stderr { get; }

    /// <summary>The app's identity and grants, for Outpost's interfaces and wasi:http/outgoing-handler.</summary>
    public HostGrant? Grant { get; init; }

    /// <summary>When the run's time is up, as a Stopwatch timestamp.</summary>
    public long Deadline { get; set; } = long.MaxValue;

    public bool TimedOut { get; set; }

    public int? ExitCode { get; set; }

    /// <summary>A failure in the host itself while serving a call (a bug, not the guest's).</summary>
    public string? HostError { get; set; }

    /// <summary>The request being served (null for a command).</summary>
    public Http.IncomingRequest? Request { get; init; }

    /// <summary>The response the guest set through its response-outparam.</summary>
    public Http.ResponseState Response { get; } = new();

    /// <summary>The largest response body the app may send.</summary>
    public int MaxResponseBytes { get; init; } = 1024 * 1024;

    /// <summary>What the host noted for the app's log.</summary>
    public List<string> Notes { get; } = [];

    /// <summary>Time left before the deadline; throws <see cref="GuestTimeoutException"/> when none.</summary>
    public TimeSpan TimeLeft()
    {
        var left = Stopwatch.GetElapsedTime(Stopwatch.GetTimestamp(), Deadline);
        if (left <= TimeSpan.Zero)
        {
            TimedOut = true;
            throw new GuestTimeoutException();
        }

        return left;
    }
}
