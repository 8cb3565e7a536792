using System.Diagnostics;
using System.Security.Cryptography;

namespace Outpost.Wasm.Components;

/// <summary>An output target that captures a guest's stdout or stderr, up to its capacity.</summary>
internal sealed class CaptureTarget(Wasi.CappedBuffer buffer) : OutputTarget
{
    public override long? Room => buffer.Overflowed ? null : Math.Max(buffer.Capacity - buffer.Length, 0);

    public override void Write(ReadOnlySpan<byte> bytes) => buffer.Write(bytes);

    public override string Refusal => $"output larger than {buffer.Capacity} bytes";
}

/// <summary>
/// The rest of WASI 0.2 that components import: cli (environment, exit, stdio, terminals), clocks and
/// random, served by the host; filesystem and sockets present but refusing, as for core modules
/// (no preopened directories, no sockets: a guest gets the interfaces' own errors, never the node's files).
/// </summary>
internal static unsafe class WasiCli
{
    public const string Version = "0.2.12";

    private static readonly string[] DescriptorFunctions =
    [
        "[method]descriptor.read-via-stream", "[method]descriptor.write-via-stream", "[method]descriptor.append-via-stream", "[method]descriptor.advise",
        "[method]descriptor.sync-data", "[method]descriptor.get-flags", "[method]descriptor.get-type", "[method]descriptor.set-size", "[method]descriptor.set-times",
        "[method]descriptor.read", "[method]descriptor.write", "[method]descriptor.read-directory", "[method]descriptor.sync", "[method]descriptor.create-directory-at",
        "[method]descriptor.stat", "[method]descriptor.stat-at", "[method]descriptor.set-times-at", "[method]descriptor.link-at", "[method]descriptor.open-at",
        "[method]descriptor.readlink-at", "[method]descriptor.remove-directory-at", "[method]descriptor.rename-at", "[method]descriptor.symlink-at",
        "[method]descriptor.unlink-file-at", "[method]descriptor.is-same-object", "[method]descriptor.metadata-hash", "[method]descriptor.metadata-hash-at",
        "[method]directory-entry-stream.read-directory-entry",
    ];

    private static readonly string[] TcpFunctions =
    [
        "[method]tcp-socket.start-bind", "[method]tcp-socket.finish-bind", "[method]tcp-socket.start-connect", "[method]tcp-socket.finish-connect",
        "[method]tcp-socket.start-listen", "[method]tcp-socket.finish-listen", "[method]tcp-socket.accept", "[method]tcp-socket.local-address",
        "[method]tcp-socket.remote-address", "[method]tcp-socket.is-listening", "[method]tcp-socket.address-family", "[method]tcp-socket.set-listen-backlog-size",
        "[method]tcp-socket.keep-alive-enabled", "[method]tcp-socket.set-keep-alive-enabled", "[method]tcp-socket.keep-alive-idle-time",
        "[method]tcp-socket.set-keep-alive-idle-time", "[method]tcp-socket.keep-alive-interval", "[method]tcp-socket.set-keep-alive-interval",
        "[method]tcp-socket.keep-alive-count", "[method]tcp-socket.set-keep-alive-count", "[method]tcp-socket.hop-limit", "[method]tcp-socket.set-hop-limit",
        "[method]tcp-socket.receive-buffer-size", "[method]tcp-socket.set-receive-buffer-size", "[method]tcp-socket.send-buffer-size",
        "[method]tcp-socket.set-send-buffer-size", "[method]tcp-socket.subscribe", "[method]tcp-socket.shutdown",
    ];

    private static readonly string[] UdpFunctions =
    [
        "[method]udp-socket.start-bind", "[method]udp-socket.finish-bind", "[method]udp-socket.stream", "[method]udp-socket.local-address",
        "[method]udp-socket.remote-address", "[method]udp-socket.address-family", "[method]udp-socket.unicast-hop-limit", "[method]udp-socket.set-unicast-hop-limit",
        "[method]udp-socket.receive-buffer-size", "[method]udp-socket.set-receive-buffer-size", "[method]udp-socket.send-buffer-size",
        "[method]udp-socket.set-send-buffer-size", "[method]udp-socket.subscribe", "[method]incoming-datagram-stream.receive",
        "[method]incoming-datagram-stream.subscribe", "[method]outgoing-datagram-stream.check-send", "[method]outgoing-datagram-stream.send",
        "[method]outgoing-datagram-stream.subscribe",
    ];

    private const string NoDescriptor = "no descriptor can exist: components get no preopened directories on Outpost";
    private const string NoSocket = "no socket can exist: components get no sockets on Outpost (use wasi:http/outgoing-handler)";

    public static List<WitInterface> Interfaces()
    {
        var all = new List<WitInterface>();
        all.Add(new WitInterface("wasi:cli", "environment", Version)
            .Func("get-environment", (ref HostCall c) =>
            {
                var env = c.Run.Environment;
                Values.List(c.Result(), env.Count, static (slot, i, state) =>
                    Values.Tuple(slot, 2, static (item, j, pair) =>
                    {
                        var (name, value) = (KeyValuePair<string, string>)pair!;
                        Values.String(item, j == 0 ? name : value);
                    }, ((IReadOnlyList<KeyValuePair<string, string>>)state!)[i]), env);
            })
            .Func("get-arguments", (ref HostCall c) =>
                Values.List(c.Result(), c.Run.Arguments.Count, static (slot, i, state) => Values.String(slot, ((IReadOnlyList<string>)state!)[i]), c.Run.Arguments))
            .Func("initial-cwd", (ref HostCall c) => Values.None(c.Result())));

        all.Add(new WitInterface("wasi:cli", "exit", Version)
            .Func("exit", (ref HostCall c) =>
            {
                var status = c.Raw(0);
                throw new GuestExitException(status->Kind == Val.Result && status->Byte != 0 ? 0 : 1);
            })
            .Func("exit-with-code", (ref HostCall c) => throw new GuestExitException(c.Raw(0)->Byte)));

        all.Add(new WitInterface("wasi:cli", "stdin", Version)
            .Func("get-stdin", (ref HostCall c) => c.NewResource(c.Result(), ResourceType.InputStream, new InputStream(c.Run.Stdin))));
        all.Add(new WitInterface("wasi:cli", "stdout", Version)
            .Func("get-stdout", (ref HostCall c) => c.NewResource(c.Result(), ResourceType.OutputStream, new OutputStream(new CaptureTarget(c.Run.Stdout)))));
        all.Add(new WitInterface("wasi:cli", "stderr", Version)
            .Func("get-stderr", (ref HostCall c) => c.NewResource(c.Result(), ResourceType.OutputStream, new OutputStream(new CaptureTarget(c.Run.Stderr)))));
        all.Add(new WitInterface("wasi:cli", "terminal-input", Version).Resource("terminal-input", ResourceType.TerminalInput));
        all.Add(new WitInterface("wasi:cli", "terminal-output", Version).Resource("terminal-output", ResourceType.TerminalOutput));
        all.Add(new WitInterface("wasi:cli", "terminal-stdin", Version).Func("get-terminal-stdin", (ref HostCall c) => Values.None(c.Result())));
        all.Add(new WitInterface("wasi:cli", "terminal-stdout", Version).Func("get-terminal-stdout", (ref HostCall c) => Values.None(c.Result())));
        all.Add(new WitInterface("wasi:cli", "terminal-stderr", Version).Func("get-terminal-stderr", (ref HostCall c) => Values.None(c.Result())));

        all.Add(new WitInterface("wasi:clocks", "monotonic-clock", Version)
            .Func("now", (ref HostCall c) => Values.U64(c.Result(), MonotonicNanos(Stopwatch.GetTimestamp())))
            .Func("resolution", (ref HostCall c) => Values.U64(c.Result(), (ulong)Math.Max(1, 1_000_000_000 / Stopwatch.Frequency)))
            .Func("subscribe-instant", (ref HostCall c) =>
                c.NewResource(c.Result(), ResourceType.Pollable, new Pollable(TimestampOf(c.U64(0)))))
            .Func("subscribe-duration", (ref HostCall c) =>
                c.NewResource(c.Result(), ResourceType.Pollable, new Pollable(TimestampOf(MonotonicNanos(Stopwatch.GetTimestamp()) + c.U64(0))))));
        all.Add(new WitInterface("wasi:clocks", "wall-clock", Version)
            .Func("now", (ref HostCall c) => DateTime(c.Result(), DateTimeOffset.UtcNow))
            .Func("resolution", (ref HostCall c) => DateTime(c.Result(), DateTimeOffset.UnixEpoch.AddTicks(1))));

        all.Add(new WitInterface("wasi:random", "random", Version)
            .Func("get-random-bytes", (ref HostCall c) => RandomBytes(ref c))
            .Func("get-random-u64", (ref HostCall c) => Values.U64(c.Result(), RandomU64())));
        all.Add(new WitInterface("wasi:random", "insecure", Version)
            .Func("get-insecure-random-bytes", (ref HostCall c) => RandomBytes(ref c))
            .Func("get-insecure-random-u64", (ref HostCall c) => Values.U64(c.Result(), RandomU64())));
        all.Add(new WitInterface("wasi:random", "insecure-seed", Version)
            .Func("insecure-seed", (ref HostCall c) =>
                Values.Tuple(c.Result(), 2, static (slot, _, _) => Values.U64(slot, RandomU64()))));

        all.Add(new WitInterface("wasi:filesystem", "types", Version)
            .Resource("descriptor", ResourceType.Descriptor)
            .Resource("directory-entry-stream", ResourceType.DirectoryEntryStream)
            .Unreachable(NoDescriptor, DescriptorFunctions)
            .Func("filesystem-error-code", (ref HostCall c) => Values.None(c.Result())));
        all.Add(new WitInterface("wasi:filesystem", "preopens", Version)
            .Func("get-directories", (ref HostCall c) => Values.List(c.Result(), 0, static (_, _, _) => { })));

        all.Add(new WitInterface("wasi:sockets", "network", Version)
            .Resource("network", ResourceType.Network)
            .Func("network-error-code", (ref HostCall c) => Values.None(c.Result())));
        all.Add(new WitInterface("wasi:sockets", "instance-network", Version)
            .Func("instance-network", (ref HostCall c) => c.NewResource(c.Result(), ResourceType.Network, new object())));
        all.Add(new WitInterface("wasi:sockets", "tcp-create-socket", Version)
            .Func("create-tcp-socket", (ref HostCall c) => AccessDenied(c.Result())));
        all.Add(new WitInterface("wasi:sockets", "tcp", Version)
            .Resource("tcp-socket", ResourceType.TcpSocket)
            .Unreachable(NoSocket, TcpFunctions));
        all.Add(new WitInterface("wasi:sockets", "udp-create-socket", Version)
            .Func("create-udp-socket", (ref HostCall c) => AccessDenied(c.Result())));
        all.Add(new WitInterface("wasi:sockets", "udp", Version)
            .Resource("udp-socket", ResourceType.UdpSocket)
            .Resource("incoming-datagram-stream", ResourceType.IncomingDatagramStream)
            .Resource("outgoing-datagram-stream", ResourceType.OutgoingDatagramStream)
            .Unreachable(NoSocket, UdpFunctions));
        all.Add(new WitInterface("wasi:sockets", "ip-name-lookup", Version)
            .Resource("resolve-address-stream", ResourceType.ResolveAddressStream)
            .Func("resolve-addresses", (ref HostCall c) => AccessDenied(c.Result()))
            .Unreachable(NoSocket, "[method]resolve-address-stream.resolve-next-address", "[method]resolve-address-stream.subscribe"));
    
        return all;
    }

    /// <summary>Nanoseconds of the monotonic clock (Stopwatch) for a Stopwatch timestamp.</summary>
    private static ulong MonotonicNanos(long timestamp) => (ulong)((Int128)timestamp * 1_000_000_000 / Stopwatch.Frequency);

    private static long TimestampOf(ulong nanos) => (long)Int128.Min((Int128)nanos * Stopwatch.Frequency / 1_000_000_000, long.MaxValue);

    private static void DateTime(Val* slot, DateTimeOffset time)
    {
        var ticks = (time - DateTimeOffset.UnixEpoch).Ticks;
        var seconds = (ulong)(ticks / TimeSpan.TicksPerSecond);
        var nanos = (uint)(ticks % TimeSpan.TicksPerSecond * 100);
        Values.Record(slot, ["seconds", "nanoseconds"], (field, i, _) =>
        {
            if (i == 0)
            {
                Values.U64(field, seconds);
            }
            else
            {
                Values.U32(field, nanos);
            }
        });
    }

    private static void RandomBytes(ref HostCall c)
    {
        var count = c.U64(0);
        if (count > 1024 * 1024)
        {
            throw new GuestTrapException($"asked for {count} random bytes; at most 1 MiB per call");
        }

        var bytes = RandomNumberGenerator.GetBytes((int)count);
        Values.Bytes(c.Result(), bytes);
    }

    private static ulong RandomU64()
    {
        Span<byte> bytes = stackalloc byte[8];
        RandomNumberGenerator.Fill(bytes);
        return BitConverter.ToUInt64(bytes);
    }

    private static void AccessDenied(Val* slot)
    {
        Val code = default;
        Values.Enum(&code, "access-denied");
        Values.Err(slot, &code);
    }
}
