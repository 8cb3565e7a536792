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
/// app when it is one, else a node of its site directly (MeshPeers), else relayed by the server. The registry
/// is the last one the server sent, kept on disk, so addresses stay up across restarts and while
/// the server is away. A DNS responder (--dns) answers NAME.mesh with the address.
/// </summary>
public sealed partial class MeshClient(AgentOptions options, AppRegistry apps, MeshPeers peers, ILogger<MeshClient> logger) : BackgroundService
{
    private readonly Lock _lock = new();
    private readonly Dictionary<(string Address, int Port), Listener> _listeners = [];
    private readonly HashSet<(string Address, int Port)> _unbindable = [];
    private volatile MeshUpdate _registry = new();
    private volatile Link? _link;
    private CancellationToken _stopping;
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, long[]> _routes = new(StringComparer.Ordinal);

    private sealed record Listener(string Service, TcpListener Socket, CancellationTokenSource Stop);

    /// <summary>The node's link to the server while a sync session is up.</summary>
    private sealed record Link(EdgeSync.EdgeSyncClient Client, Metadata Headers, CancellationToken Session);

    private string RegistryPath => Path.Combine(options.DataDir, "mesh.registry");

    /// <summary>What <see cref="Count"/> counts per service: how connections were carried, or why not, and heals.</summary>
    public static readonly string[] Routes = ["local", "direct", "relayed", "refused", "not_allowed", "healed"];

    /// <summary>Per service, the connections this node opened by route (in the order of <see cref="Routes"/>).</summary>
    public IEnumerable<(string Service, long[] Counts)> Connections =>
        _routes.ToArray().OrderBy(r => r.Key, StringComparer.Ordinal).Select(r => (r.Key, r.Value.ToArray()));

    /// <summary>Counts one connection to <paramref name="service"/> by <paramref name="route"/> (one of <see cref="Routes"/>).</summary>
    public void Count(string service, string route) =>
        Interlocked.Increment(ref _routes.GetOrAdd(service, _ => new long[Routes.Length])[Array.IndexOf(Routes, route)]);

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
        var probes = peers.RunProbesAsync(DirectPeers, stoppingToken);
        try
        {
            await Task.WhenAll(dns, probes, Task.Delay(Timeout.Infinite, stoppingToken));
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

    /// <summary>One connection to a service's address, carried to an endpoint until both sides are done.</summary>
    private async Task CarryAsync(string service, Socket accepted, CancellationToken cancellationToken)
    {
        using (accepted)
        {
            try
            {
                await using var connection = await OpenAsync(service, cancellationToken);
                await using (var local = new NetworkStream(accepted, ownsSocket: false))
                {
                    await Core.Net.Pump.BothAsync(
                        token => Core.Net.Pump.CopyAsync(local, connection.Stream, connection.ShutdownWriteAsync, flushEach: false, token),
                        token => Core.Net.Pump.CopyAsync(connection.Stream, local, () => ShutdownAsync(accepted), flushEach: false, token),
                        cancellationToken);
                }

                // A relayed wire ends its call only once the server is done too, or unread bytes would be lost.
                using var linger = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                linger.CancelAfter(TimeSpan.FromSeconds(30));
                await connection.DrainAsync(linger.Token);
            }
            catch (Exception ex) when (ex is MeshUnavailableException or RpcException or IOException or SocketException or OperationCanceledException or ObjectDisposedException or InvalidOperationException)
            {
                // The client sees its connection close.
                LogConnectionEnded(logger, service, ex.Message);
            }
        }
    }

    /// <summary>
    /// A connection to ONE endpoint of <paramref name="service"/>: this node's own app when it is
    /// one; else a node of this site, directly (in random order, passing over nodes that failed a
    /// moment ago); else through the server, which picks. <paramref name="avoid"/> names a node
    /// not to use (a retry after it failed). Throws <see cref="MeshUnavailableException"/> when
    /// nothing can be reached, with each reason.
    /// </summary>
    public async Task<MeshConnection> OpenAsync(string service, CancellationToken cancellationToken, string? avoid = null)
    {
        var registry = _registry;
        var entry = registry.Services.FirstOrDefault(s => s.Name == service);
        if (entry is null)
        {
            Count(service, "refused");
            throw new MeshUnavailableException($"service '{service}' not found: no app exposes it");
        }

        if (!registry.Calls.Contains(service))
        {
            // Least privilege: checked here first, and again by the server and by the endpoint's node.
            Count(service, "not_allowed");
            throw new MeshUnavailableException(MeshRules.NotAllowed(options.NodeName, service));
        }

        var own = entry.Endpoints.FirstOrDefault(e => e.Node == options.NodeName && apps.Named(e.App) is not null);
        if (own is not null && avoid != options.NodeName)
        {
            var socket = await MeshListener.ConnectToAppAsync(options.DataDir, own.App, cancellationToken);
            Count(service, "local");
            return new MeshConnection(new NetworkStream(socket, ownsSocket: true), MeshRoute.Local, options.NodeName, () => ShutdownAsync(socket));
        }

        var failures = new List<string>();
        var unreachable = new List<string>();
        var site = Site;
        var sameSite = site is null ? [] : entry.Endpoints
            .Where(e => e.Node != options.NodeName && e.Node != avoid && e.Site == site && e.Ready && e.Address.Length > 0)
            .DistinctBy(e => e.Node)
            .OrderBy(_ => Random.Shared.Next())
            .ToList();
        var link = _link is { } up && !up.Session.IsCancellationRequested ? up : null;
        // Same-site nodes passed over (failing their probes, or a dial a moment ago): the server is told not to pick them either.
        if (link is not null)
        {
            unreachable.AddRange(sameSite.Where(e => peers.IsDown(e.Node)).Select(e => e.Node));
        }
        // Nodes that failed a moment ago are tried again only when there is no server to relay.
        foreach (var endpoint in sameSite.Where(e => !peers.IsDown(e.Node)).Concat(link is null ? sameSite.Where(e => peers.IsDown(e.Node)) : []))
        {
            try
            {
                var connection = await peers.DialAsync(endpoint.Node, endpoint.Address, service, cancellationToken);
                Count(service, "direct");
                if (failures.Count > 0)
                {
                    Count(service, "healed");
                }

                return connection;
            }
            catch (MeshUnavailableException ex)
            {
                failures.Add(ex.Message);
                unreachable.Add(endpoint.Node);
            }
        }

        if (link is null)
        {
            Count(service, "refused");
            failures.Add("the server, which relays to other sites, is unreachable");
            throw new MeshUnavailableException($"service '{service}': no endpoint could be reached ({string.Join("; ", failures)})");
        }

        var headers = new Metadata();
        foreach (var header in link.Headers)
        {
            headers.Add(header);
        }

        headers.Add("outpost-dial", service);
        // Nodes this one could not reach just now: the server need not try them (it may not know yet).
        if (avoid is not null)
        {
            unreachable.Add(avoid);
        }

        if (unreachable.Count > 0)
        {
            headers.Add("outpost-avoid", string.Join(',', unreachable));
        }

        var call = link.Client.Wire(headers, cancellationToken: link.Session);
        var wire = new WireStream(call.ResponseStream, call.RequestStream, call.RequestStream.CompleteAsync, owner: call);
        Count(service, "relayed");
        if (failures.Count > 0 || avoid is not null)
        {
            Count(service, "healed"); // an endpoint failed this very connection; the server picks another
        }

        return new MeshConnection(wire, MeshRoute.Relayed, "", () => wire.ShutdownWriteAsync(link.Session), wire.WaitForCloseAsync);
    }

    /// <summary>The nodes of this site this one may dial directly (endpoints of services it calls), with their addresses: those it probes.</summary>
    private IReadOnlyCollection<(string Node, string Address)> DirectPeers()
    {
        var registry = _registry;
        var site = Site;
        if (site is null)
        {
            return [];
        }

        return [.. registry.Services.Where(s => registry.Calls.Contains(s.Name))
            .SelectMany(s => s.Endpoints)
            .Where(e => e.Node != options.NodeName && e.Site == site && e.Ready && e.Address.Length > 0)
            .Select(e => (e.Node, e.Address))
            .DistinctBy(e => e.Node)];
    }

    /// <summary>True when the registry this node holds lets <paramref name="caller"/> open wires to <paramref name="service"/>.</summary>
    public bool Admits(string service, string caller) => MeshRules.Admits(_registry, service, caller);

    /// <summary>This node's site: as the server last said, else its own --labels.</summary>
    public string? Site => _registry.Site.Length > 0 ? _registry.Site : options.Labels.GetValueOrDefault("site");

    /// <summary>
    /// For node <paramref name="peer"/> dialling <paramref name="service"/> (directly, or relayed by
    /// the server): the app of this node that serves it, or why none does (an unknown service, a
    /// node the service does not admit, or none of its endpoints here).
    /// </summary>
    public (string? App, string? Refusal) ServingApp(string peer, string service)
    {
        var registry = _registry;
        var entry = registry.Services.FirstOrDefault(s => s.Name == service);
        if (entry is null)
        {
            return (null, $"service '{service}' not found");
        }

        if (!MeshRules.Admits(registry, service, peer))
        {
            return (null, MeshRules.NotAllowed(peer, service));
        }

        var own = entry.Endpoints.FirstOrDefault(e => e.Node == options.NodeName && apps.Named(e.App) is not null);
        return own is null ? (null, $"node {options.NodeName} serves no endpoint of service '{service}'") : (own.App, null);
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
