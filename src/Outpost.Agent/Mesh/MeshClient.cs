using System.Net;
using System.Net.Sockets;
using Google.Protobuf;
using Grpc.Core;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Outpost.Agent.Apps;
using Outpost.Agent.Hosting;
using Outpost.Protocol;

namespace Outpost.Agent.Mesh;

/// <summary>
/// The mesh as a program on this node sees it: every service at its own address (127.77.x.y, the
/// same on every node) and port, a connection there carried to ONE endpoint — this node's own
/// app when it is one, else relayed by the server (which prefers this node's site). The registry
/// is the last one the server sent, kept on disk, so addresses stay up across restarts and while
/// the server is away. A DNS responder (--dns) answers NAME.mesh with the address.
/// </summary>
public sealed partial class MeshClient(AgentOptions options, AppRegistry apps, ILogger<MeshClient> logger) : BackgroundService
{
    private readonly Lock _lock = new();
    private readonly Dictionary<(string Address, int Port), Listener> _listeners = [];
    private readonly HashSet<(string Address, int Port)> _unbindable = [];
    private volatile MeshUpdate _registry = new();
    private volatile Link? _link;
    private CancellationToken _stopping;
    private long _local;
    private long _relayed;
    private long _refused;

    private sealed record Listener(string Service, TcpListener Socket, CancellationTokenSource Stop);

    /// <summary>The node's link to the server while a sync session is up.</summary>
    private sealed record Link(EdgeSync.EdgeSyncClient Client, Metadata Headers, CancellationToken Session);

    private string RegistryPath => Path.Combine(options.DataDir, "mesh.registry");

    public long LocalConnections => Interlocked.Read(ref _local);

    public long RelayedConnections => Interlocked.Read(ref _relayed);

    public long RefusedConnections => Interlocked.Read(ref _refused);

    /// <summary>The services as last heard from the server.</summary>
    public IReadOnlyList<Protocol.MeshService> Services => _registry.Services;

    /// <summary>A sync session is up: relayed wires go through it.</summary>
    public void Linked(EdgeSync.EdgeSyncClient client, Metadata headers, CancellationToken session) => _link = new Link(client, headers, session);

    public void Unlinked() => _link = null;

    /// <summary>A new registry from the server: kept on disk, and the listeners follow it.</summary>
    public void Update(MeshUpdate update)
    {
        ArgumentNullException.ThrowIfNull(update);
        _registry = update;
        var temporary = RegistryPath + ".tmp";
        File.WriteAllBytes(temporary, update.ToByteArray());
        File.Move(temporary, RegistryPath, overwrite: true);
        Reconcile();
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        _stopping = stoppingToken;
        if (File.Exists(RegistryPath))
        {
            try
            {
                _registry = MeshUpdate.Parser.ParseFrom(await File.ReadAllBytesAsync(RegistryPath, stoppingToken));
            }
            catch (InvalidProtocolBufferException)
            {
                // Damaged: the server sends a fresh one on connect.
            }
        }

        Reconcile();
        var dns = options.Dns is { } address ? new MeshDns(Core.Api.ListenAddress.Parse(address), this, logger).RunAsync(stoppingToken) : Task.CompletedTask;
        try
        {
            await Task.WhenAll(dns, Task.Delay(Timeout.Infinite, stoppingToken));
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // Stopping.
        }
        finally
        {
            lock (_lock)
            {
                foreach (var listener in _listeners.Values)
                {
                    Close(listener);
                }

                _listeners.Clear();
            }
        }
    }

    /// <summary>Listens on the address and port of every service, and on nothing else.</summary>
    private void Reconcile()
    {
        if (!options.ServiceAddresses || _stopping.IsCancellationRequested)
        {
            return;
        }

        lock (_lock)
        {
            var wanted = _registry.Services.ToDictionary(s => (s.Address, s.Port), s => s.Name);
            foreach (var (key, listener) in _listeners.Where(l => !wanted.TryGetValue(l.Key, out var name) || name != l.Value.Service).ToList())
            {
                Close(listener);
                _listeners.Remove(key);
            }

            foreach (var ((address, port), name) in wanted)
            {
                if (_listeners.ContainsKey((address, port)) || !IPAddress.TryParse(address, out var ip))
                {
                    continue;
                }

                var socket = new TcpListener(ip, port);
                try
                {
                    socket.Start();
                }
                catch (SocketException ex)
                {
                    // Taken: another agent on this host serves it (run agents in their own network
                    // namespaces to give each its own), or a program of the node's own.
                    socket.Dispose();
                    if (_unbindable.Add((address, port)))
                    {
                        LogCannotListen(logger, name, address, port, ex.Message);
                    }

                    continue;
                }

                var listener = new Listener(name, socket, CancellationTokenSource.CreateLinkedTokenSource(_stopping));
                _listeners[(address, port)] = listener;
                _ = Task.Run(() => AcceptLoopAsync(listener), CancellationToken.None);
            }
        }
    }

    private static void Close(Listener listener)
    {
        listener.Stop.Cancel();
        listener.Socket.Dispose();
        listener.Stop.Dispose();
    }

    private async Task AcceptLoopAsync(Listener listener)
    {
        var stop = listener.Stop.Token;
        while (!stop.IsCancellationRequested)
        {
            Socket accepted;
            try
            {
                accepted = await listener.Socket.AcceptSocketAsync(stop);
            }
            catch (Exception ex) when (ex is OperationCanceledException or ObjectDisposedException or SocketException)
            {
                return;
            }

            accepted.NoDelay = true;
            _ = Task.Run(() => CarryAsync(listener.Service, accepted, stop), CancellationToken.None);
        }
    }

    /// <summary>One connection to a service: to this node's own endpoint, or relayed by the server.</summary>
    private async Task CarryAsync(string service, Socket accepted, CancellationToken cancellationToken)
    {
        using (accepted)
        {
            try
            {
                var entry = _registry.Services.FirstOrDefault(s => s.Name == service);
                var own = entry?.Endpoints.FirstOrDefault(e => e.Node == options.NodeName && e.Healthy && apps.Named(e.App) is not null);
                if (own is not null)
                {
                    Interlocked.Increment(ref _local);
                    await CarryLocallyAsync(accepted, own.App, cancellationToken);
                    return;
                }

                if (_link is not { } link || link.Session.IsCancellationRequested)
                {
                    Interlocked.Increment(ref _refused);
                    return; // no endpoint here and no way to the server: the client sees the connection close
                }

                var headers = new Metadata();
                foreach (var header in link.Headers)
                {
                    headers.Add(header);
                }

                headers.Add("outpost-dial", service);
                using var both = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, link.Session);
                using var call = link.Client.Wire(headers, cancellationToken: both.Token);
                await using var wire = new WireStream(call.ResponseStream, call.RequestStream, call.RequestStream.CompleteAsync);
                Interlocked.Increment(ref _relayed);
                await WirePump.RunAsync(accepted, wire, both.Token);
            }
            catch (Exception ex) when (ex is RpcException or IOException or SocketException or OperationCanceledException or ObjectDisposedException or InvalidOperationException)
            {
                LogConnectionEnded(logger, service, ex.Message);
            }
        }
    }

    /// <summary>This node serves it: straight into the app through the mesh socket, no wire at all.</summary>
    private async Task CarryLocallyAsync(Socket accepted, string app, CancellationToken cancellationToken)
    {
        using var target = await MeshListener.ConnectToAppAsync(options.DataDir, app, cancellationToken);
        await using var a = new NetworkStream(accepted, ownsSocket: false);
        await using var b = new NetworkStream(target, ownsSocket: false);
        await Core.Net.Pump.BothAsync(
            token => Core.Net.Pump.CopyAsync(a, b, () => ShutdownAsync(target), flushEach: false, token),
            token => Core.Net.Pump.CopyAsync(b, a, () => ShutdownAsync(accepted), flushEach: false, token),
            cancellationToken);
    }

    private static Task ShutdownAsync(Socket socket)
    {
        socket.Shutdown(SocketShutdown.Send);
        return Task.CompletedTask;
    }

    /// <summary>The address of service <paramref name="name"/>, if the registry has it.</summary>
    public IPAddress? AddressOf(string name) =>
        _registry.Services.FirstOrDefault(s => s.Name == name) is { } service && IPAddress.TryParse(service.Address, out var ip) ? ip : null;

    public override void Dispose()
    {
        lock (_lock)
        {
            foreach (var listener in _listeners.Values)
            {
                Close(listener);
            }

            _listeners.Clear();
        }

        base.Dispose();
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Service {Service}: cannot listen on {Address}:{Port} ({Reason}); programs on this node reach it there only if something else does")]
    private static partial void LogCannotListen(ILogger logger, string service, string address, int port, string reason);

    [LoggerMessage(Level = LogLevel.Debug, Message = "A connection to service {Service} ended early: {Reason}")]
    private static partial void LogConnectionEnded(ILogger logger, string service, string reason);
}
