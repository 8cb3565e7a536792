using System.Net;
using System.Net.Sockets;
using Grpc.Core;
using Microsoft.Extensions.Logging;
using Outpost.Agent.Hosting;
using Outpost.Protocol;

namespace Outpost.Agent.Mesh;

/// <summary>
/// The node's end of wires the server asks for (OpenWire on the sync stream): the node opens
/// the Wire call on its own connection and serves it here: HTTP for its gateway or an app in
/// process (<see cref="WireTransport"/>), or a port on its loopback, bytes copied both ways until
/// both sides are done, half-closes included.
/// </summary>
public sealed partial class NodeWires(AgentOptions options, MeshClient mesh, WireTransport transport, ILogger<NodeWires> logger)
{
    private int _open;
    private int _sockets;
    private long _opened;
    private long _failed;
    private long _notAllowed;

    public int Open => Volatile.Read(ref _open);

    public long Opened => Interlocked.Read(ref _opened);

    public long Failed => Interlocked.Read(ref _failed);

    /// <summary>Relayed dials refused here: the dialling node is not among the service's clients as this node knows them.</summary>
    public long NotAllowed => Interlocked.Read(ref _notAllowed);

    /// <summary>
    /// The most wires to ports on this node (port-forward) it serves at once: half its open-files
    /// limit (each is a socket pair of this process) less a reserve for everything else. 100,000
    /// when the limit is unknown. Wires to its gateway and apps hold no descriptor: they are served
    /// in process (<see cref="WireTransport"/>), bounded by the server's streams per connection.
    /// </summary>
    public static readonly int MaxOpen = OpenFilesLimit() is { } limit ? (int)Math.Max(16, (limit - 1024) / 2) : 100_000;

    /// <summary>The soft "Max open files" of this process, from /proc/self/limits.</summary>
    private static long? OpenFilesLimit()
    {
        try
        {
            var line = File.ReadLines("/proc/self/limits").FirstOrDefault(l => l.StartsWith("Max open files", StringComparison.Ordinal));
            var fields = line?["Max open files".Length..].Split(' ', StringSplitOptions.RemoveEmptyEntries);
            return fields is { Length: > 0 } && long.TryParse(fields[0], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var soft) ? soft : null;
        }
        catch (IOException)
        {
            return null;
        }
    }

    /// <summary>Serves one OpenWire in the background; it ends with the wire, or with the session.</summary>
    public void Serve(EdgeSync.EdgeSyncClient client, Metadata sessionHeaders, OpenWire open, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(client);
        ArgumentNullException.ThrowIfNull(sessionHeaders);
        ArgumentNullException.ThrowIfNull(open);
        _ = Task.Run(() => ServeAsync(client, sessionHeaders, open, cancellationToken), CancellationToken.None);
    }

    private async Task ServeAsync(EdgeSync.EdgeSyncClient client, Metadata sessionHeaders, OpenWire open, CancellationToken cancellationToken)
    {
        var headers = new Metadata();
        foreach (var entry in sessionHeaders)
        {
            headers.Add(entry);
        }

        headers.Add(WireStream.IdHeader, open.Id);
        Interlocked.Increment(ref _open);
        try
        {
            using var call = client.Wire(headers, cancellationToken: cancellationToken);
            await using var wire = new WireStream(call.ResponseStream, call.RequestStream, call.RequestStream.CompleteAsync);
            if (open.Caller.Length > 0 && !mesh.Admits(open.Service, open.Caller))
            {
                // The server checked too; the endpoint's node does not take its word for it.
                Interlocked.Increment(ref _notAllowed);
                LogNotAllowed(logger, open.Caller, open.Service);
                await wire.FailAsync(MeshRules.NotAllowed(open.Caller, open.Service));
                return;
            }

            if (open.Target == "gateway" || (open.Target.StartsWith("app/", StringComparison.Ordinal) && Core.Manifests.ManifestValidator.IsDnsLabel(open.Target[4..])))
            {
                // HTTP for the gateway or an app: served in process, no socket.
                Interlocked.Increment(ref _opened);
                await transport.ServeAsync(wire, open.Target == "gateway" ? null : open.Target[4..], () => wire.ShutdownWriteAsync(cancellationToken), wire.WaitForCloseAsync, cancellationToken);
                return;
            }

            if (open.Target == "exec" && open.Caller.Length == 0)
            {
                // Only the server opens these (for an admin's `outpost exec`, audited there); never a node's wire.
                Interlocked.Increment(ref _opened);
                await transport.ServeAsync(wire, MeshListener.ExecTarget, () => wire.ShutdownWriteAsync(cancellationToken), wire.WaitForCloseAsync, cancellationToken);
                return;
            }

            await ServeSocketAsync(wire, open, cancellationToken);
        }
        catch (Exception ex) when (ex is RpcException or IOException or SocketException or OperationCanceledException or ObjectDisposedException or InvalidOperationException)
        {
            // The wire ended early: the server, the local side or the session went away.
            LogWireBroken(logger, open.Target, ex.Message);
        }
        finally
        {
            Interlocked.Decrement(ref _open);
        }
    }

    /// <summary>A wire to a port on this node: a socket, bytes copied both ways.</summary>
    private async Task ServeSocketAsync(WireStream wire, OpenWire open, CancellationToken cancellationToken)
    {
        Interlocked.Increment(ref _sockets);
        try
        {
            if (Volatile.Read(ref _sockets) > MaxOpen)
            {
                // Each holds two descriptors here: past this, the node's own stores and logs could
                // not open a file. The caller is told.
                Interlocked.Increment(ref _failed);
                LogFull(logger, MaxOpen, open.Target);
                await wire.FailAsync($"node {options.NodeName} holds its most wires to ports ({MaxOpen}, from its open-files limit)");
                return;
            }

            Socket socket;
            try
            {
                socket = await DialAsync(open.Target, cancellationToken);
            }
            catch (Exception ex) when (ex is SocketException or ArgumentException or IOException)
            {
                Interlocked.Increment(ref _failed);
                LogDialFailed(logger, open.Target, ex.Message);
                await wire.FailAsync($"node {options.NodeName} could not reach {open.Target}: {ex.Message}");
                return;
            }

            Interlocked.Increment(ref _opened);
            using (socket)
            {
                await WirePump.RunAsync(socket, wire, cancellationToken);
            }
        }
        finally
        {
            Interlocked.Decrement(ref _sockets);
        }
    }

    /// <summary>"tcp/PORT": PORT on loopback.</summary>
    private static Task<Socket> DialAsync(string target, CancellationToken cancellationToken)
    {
        if (target.StartsWith("tcp/", StringComparison.Ordinal) && int.TryParse(target[4..], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var port)
            && port is > 0 and <= 65535)
        {
            // A port on this node's loopback only, for an admin's port-forward.
            return MeshListener.ConnectAsync(new IPEndPoint(IPAddress.Loopback, port), null, cancellationToken);
        }

        throw new ArgumentException($"unknown wire target '{target}'");
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Refused node {Caller} a relayed wire to service {Service}: not among its clients")]
    private static partial void LogNotAllowed(ILogger logger, string caller, string service);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Refused a wire to {Target}: this node holds its most wires ({Max})")]
    private static partial void LogFull(ILogger logger, int max, string target);

    [LoggerMessage(Level = LogLevel.Debug, Message = "A wire to {Target} ended early: {Reason}")]
    private static partial void LogWireBroken(ILogger logger, string target, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "A wire to {Target} could not be opened here: {Reason}")]
    private static partial void LogDialFailed(ILogger logger, string target, string reason);
}
