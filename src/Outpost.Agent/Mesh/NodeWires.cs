using System.Net;
using System.Net.Sockets;
using Grpc.Core;
using Microsoft.Extensions.Logging;
using Outpost.Agent.Hosting;
using Outpost.Protocol;

namespace Outpost.Agent.Mesh;

/// <summary>
/// The node's end of wires the server asks for (OpenWire on the sync stream): the node opens
/// the Wire call on its own connection, dials the target here (its gateway, or an app through
/// the mesh socket) and copies bytes both ways until both sides are done, half-closes included.
/// </summary>
public sealed partial class NodeWires(AgentOptions options, GatewayInfo gateway, MeshClient mesh, ILogger<NodeWires> logger)
{
    private int _open;
    private long _opened;
    private long _failed;
    private long _notAllowed;

    public int Open => Volatile.Read(ref _open);

    public long Opened => Interlocked.Read(ref _opened);

    public long Failed => Interlocked.Read(ref _failed);

    /// <summary>Relayed dials refused here: the dialling node is not among the service's clients as this node knows them.</summary>
    public long NotAllowed => Interlocked.Read(ref _notAllowed);

    /// <summary>
    /// The most wires this node serves at once: half its open-files limit (a wire into an app is a
    /// socket pair of this process) less a reserve for everything else. 100,000 when the limit is unknown.
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
            if (Volatile.Read(ref _open) > MaxOpen)
            {
                // Each wire into an app holds two descriptors here: past this, the node's own stores
                // and logs could not open a file. The caller is told, and tries another endpoint.
                Interlocked.Increment(ref _failed);
                LogFull(logger, MaxOpen, open.Target);
                await wire.FailAsync($"node {options.NodeName} holds its most wires ({MaxOpen}, from its open-files limit)");
                return;
            }

            if (open.Caller.Length > 0 && !mesh.Admits(open.Service, open.Caller))
            {
                // The server checked too; the endpoint's node does not take its word for it.
                Interlocked.Increment(ref _notAllowed);
                LogNotAllowed(logger, open.Caller, open.Service);
                await wire.FailAsync(MeshRules.NotAllowed(open.Caller, open.Service));
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

    /// <summary>"gateway": this node's HTTP gateway; "app/NAME": app NAME through the mesh socket; "tcp/PORT": PORT on loopback.</summary>
    private Task<Socket> DialAsync(string target, CancellationToken cancellationToken)
    {
        if (target == "gateway")
        {
            return MeshListener.ConnectAsync(GatewayEndpoint(), null, cancellationToken);
        }

        if (target.StartsWith("tcp/", StringComparison.Ordinal) && int.TryParse(target[4..], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var port)
            && port is > 0 and <= 65535)
        {
            // A port on this node's loopback only, for an admin's port-forward.
            return MeshListener.ConnectAsync(new IPEndPoint(IPAddress.Loopback, port), null, cancellationToken);
        }

        if (target.StartsWith("app/", StringComparison.Ordinal) && Core.Manifests.ManifestValidator.IsDnsLabel(target[4..]))
        {
            return MeshListener.ConnectToAppAsync(options.DataDir, target[4..], cancellationToken);
        }

        throw new ArgumentException($"unknown wire target '{target}'");
    }

    /// <summary>The gateway's address as a client on this node dials it (a wildcard bind is reached on loopback).</summary>
    private IPEndPoint GatewayEndpoint()
    {
        var url = new Uri(gateway.Url);
        var address = IPAddress.Parse(url.Host.Trim('[', ']'));
        if (address.Equals(IPAddress.Any))
        {
            address = IPAddress.Loopback;
        }
        else if (address.Equals(IPAddress.IPv6Any))
        {
            address = IPAddress.IPv6Loopback;
        }

        return new IPEndPoint(address, url.Port);
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
