using System.Text.Json.Nodes;
using Outpost.Core.Api;
using Outpost.Core.Resources;
using Outpost.Core.Store;
using Outpost.Server.Api;

namespace Outpost.Server.Mesh;

/// <summary>
/// One instance of an app that serves a network service, on one node: healthy when the node is
/// Ready and linked to this server and the app Ready on it, so wires may go there.
/// </summary>
public sealed record MeshEndpoint(string Node, string App, long Generation, string? Site, string NodeState, string AppState, bool Connected, bool Healthy)
{
    /// <summary>Where nodes of its site reach it directly (HOST:PORT), if it takes direct wires.</summary>
    public string? Address { get; init; }

    /// <summary>False while its node, linked, leaves the server's liveness probes unanswered (hung): picked last for wires.</summary>
    public bool Answering { get; init; } = true;
}

/// <summary>A network service: the apps that expose it, its port, and their instances on the nodes.</summary>
public sealed record MeshService(string Name, int Port, IReadOnlyList<string> Apps, IReadOnlyList<MeshEndpoint> Endpoints, DateTimeOffset Created)
{
    /// <summary>The public path the server's ingress listener serves it at, if any.</summary>
    public string? Ingress { get; init; }

    /// <summary>Its address on every node, in 127.77.0.0/16.</summary>
    public string Address { get; init; } = "";

    /// <summary>True when a NetworkService resource declares it (not only apps' spec.expose).</summary>
    public bool Declared { get; init; }

    /// <summary>The nodes that may open wires to it (least privilege: the server, the caller's node and the endpoint's node all check).</summary>
    public IReadOnlySet<string> Clients { get; init; } = new HashSet<string>();

    public IEnumerable<MeshEndpoint> Healthy => Endpoints.Where(e => e.Healthy);
}

/// <summary>
/// The fleet's network services, read from what the store holds: each app's <c>spec.expose</c>
/// and each node's report of its apps, with the nodes' states and links. An endpoint counts as
/// healthy only while its node is Ready, linked to this server, and reports the app Ready, so an
/// app that stops being Ready, or a node whose lease lapses, leaves at once.
/// </summary>
public sealed class MeshRegistry(IControlPlaneStore store, ResourceView view, WireRelay relay)
{
    /// <summary>The node label that names a node's site, for locality.</summary>
    public const string SiteLabel = "site";

    public async Task<IReadOnlyList<MeshService>> ListAsync(CancellationToken cancellationToken)
    {
        var all = (await store.ListAsync(ResourceKind.Application.Kind, cancellationToken)).Items
            .Select(a => (Resource: a, Spec: ApplicationSpec.FromJson(a.Spec())))
            .ToList();
        var declared = (await store.ListAsync(ResourceKind.NetworkService.Kind, cancellationToken)).Items
            .ToDictionary(r => r.Name, r => (Resource: r, Spec: NetworkServiceSpec.FromJson(r.Spec())), StringComparer.Ordinal);

        // A service's apps: those its NetworkService selects by their labels, and those exposing it (spec.expose).
        var groups = new SortedDictionary<string, List<(StoredResource Resource, ApplicationSpec Spec)>>(StringComparer.Ordinal);
        foreach (var name in declared.Keys)
        {
            groups[name] = [.. all.Where(a => declared[name].Spec.Selects(a.Resource.Labels))];
        }

        foreach (var app in all.Where(a => a.Spec.Expose is not null))
        {
            var list = groups.TryGetValue(app.Spec.Expose!.Service, out var existing) ? existing : groups[app.Spec.Expose.Service] = [];
            if (!list.Any(a => a.Resource.Name == app.Resource.Name))
            {
                list.Add(app);
            }
        }

        if (groups.Count == 0)
        {
            return [];
        }

        // Each node's state and the apps it reports, read from its status in one pass rather than
        // rendering the node whole (status tree, sync counters, conditions): the registry is
        // computed again at stream changes and twice a second, over every node of the fleet.
        var nodes = (await store.ListAsync(ResourceKind.Node.Kind, cancellationToken)).Items.Select(n =>
        {
            var (beat, apps) = Sync.NodeStatusReader.Read(n.StatusJson);
            return (Resource: n, Labels: n.Labels, State: view.NodeStateOf(n.Name, beat), Apps: apps);
        }).ToList();
        var services = new List<MeshService>();
        foreach (var (serviceName, group) in groups)
        {
            var resourceSpec = declared.TryGetValue(serviceName, out var d) ? d.Spec : null;
            var endpoints = new List<MeshEndpoint>();
            foreach (var (resource, spec) in group)
            {
                // Where the app is placed now and reports itself: a node it has just left may still
                // report it for a beat, but is no endpoint any more.
                foreach (var node in nodes)
                {
                    if (!spec.Targets(node.Labels) || !node.Apps.TryGetValue(resource.Name, out var reported))
                    {
                        continue;
                    }

                    var name = node.Resource.Name;
                    var appState = reported.State ?? "Unknown";
                    var connected = relay.IsConnected(name);
                    endpoints.Add(new MeshEndpoint(name, resource.Name, reported.Generation, node.Labels.GetValueOrDefault(SiteLabel),
                        node.State, appState, connected, connected && node.State == NodeState.Ready && appState == "Ready")
                    {
                        Address = Sync.NodeStatusReader.ReadString(node.Resource.StatusJson, "meshAddress"),
                        Answering = connected && !relay.IsUnresponsive(name),
                    });
                }
            }

            // Who may open wires to it: nodes an app that calls it (http-out NAME.mesh) is placed on,
            // and nodes the service admits for their own programs (clients.nodeSelector, of the
            // NetworkService or of an app's expose).
            var selectors = group.Select(a => a.Spec.Expose?.Service == serviceName ? a.Spec.Expose.Clients : null).Append(resourceSpec?.Clients).OfType<IReadOnlyDictionary<string, string>>().ToList();
            var clients = new SortedSet<string>(StringComparer.Ordinal);
            foreach (var node in nodes)
            {
                var labels = node.Labels;
                if (all.Any(a => a.Spec.MeshServicesCalled.Contains(serviceName, StringComparer.Ordinal) && a.Spec.Targets(labels))
                    || selectors.Any(selector => selector.All(p => labels.TryGetValue(p.Key, out var v) && v == p.Value)))
                {
                    clients.Add(node.Resource.Name);
                }
            }

            // A NetworkService's port and ingress decide; else one port per service is enforced at
            // apply, and the first exposing app by name decides if an old store disagrees.
            var exposing = group.Where(a => a.Spec.Expose?.Service == serviceName).OrderBy(a => a.Resource.Name, StringComparer.Ordinal).ToList();
            var created = d.Resource?.CreationTimestamp ?? group.Min(a => a.Resource.CreationTimestamp);
            services.Add(new MeshService(serviceName, resourceSpec?.Port ?? exposing[0].Spec.Expose!.Port, group.Select(a => a.Resource.Name).Order(StringComparer.Ordinal).ToList(),
                endpoints.OrderBy(e => e.Node, StringComparer.Ordinal).ThenBy(e => e.App, StringComparer.Ordinal).ToList(),
                created)
            {
                Ingress = resourceSpec?.Ingress ?? exposing.Select(a => a.Spec.Expose!.Ingress).FirstOrDefault(i => i is not null),
                Clients = clients,
                Declared = resourceSpec is not null,
            });
        }

        // Addresses: each service's own slot (from its name's hash), the older service keeping a
        // slot two names share; so an address stays through restarts and endpoint changes.
        var taken = new HashSet<int>();
        var withAddresses = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var service in services.OrderBy(s => s.Created).ThenBy(s => s.Name, StringComparer.Ordinal))
        {
            var slot = SlotOf(service.Name);
            while (!taken.Add(slot))
            {
                slot = slot % Slots + 1;
            }

            withAddresses[service.Name] = $"127.77.{slot / 256}.{slot % 256}";
        }

        return [.. services.Select(s => s with { Address = withAddresses[s.Name] })];
    }

    /// <summary>Slots 1..65534 of 127.77.0.0/16 (not .0.0, not .255.255).</summary>
    private const int Slots = 65534;

    private static int SlotOf(string name) =>
        (int)(System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(name))) % Slots) + 1;

    /// <summary>What a node is told of the services: addresses, ports and endpoints.</summary>
    public static Protocol.MeshUpdate ToUpdate(IEnumerable<MeshService> services)
    {
        var update = new Protocol.MeshUpdate();
        foreach (var service in services ?? [])
        {
            var entry = new Protocol.MeshService { Name = service.Name, Address = service.Address, Port = service.Port };
            entry.Endpoints.Add(service.Endpoints.Select(e => new Protocol.MeshEndpoint
            {
                Node = e.Node,
                App = e.App,
                Site = e.Site ?? "",
                Healthy = e.Healthy,
                Address = e.Address ?? "",
                Ready = e.AppState == "Ready",
            }));
            update.Services.Add(entry);
        }

        return update;
    }

    public async Task<MeshService?> GetAsync(string name, CancellationToken cancellationToken) =>
        (await ListAsync(cancellationToken)).FirstOrDefault(s => s.Name == name);

    /// <summary>How old a registry the request path may use, the store unchanged since.</summary>
    public static readonly TimeSpan RecentEnough = TimeSpan.FromSeconds(1);

    private sealed record Recent(long Revision, long At, IReadOnlyList<MeshService> Services);

    private Recent? _recent;

    /// <summary>
    /// Every service, as <see cref="ListAsync"/> says, but computed again only when the store has
    /// changed (or after <see cref="RecentEnough"/>): the proxy's and the relay's per-request
    /// lookups must not read the whole store. A wire to an endpoint whose node left since fails at
    /// once, and the next endpoint is tried.
    /// </summary>
    public async Task<IReadOnlyList<MeshService>> ListRecentAsync(CancellationToken cancellationToken)
    {
        var revision = await store.GetRevisionAsync(cancellationToken);
        var recent = Volatile.Read(ref _recent);
        if (recent is null || recent.Revision != revision || System.Diagnostics.Stopwatch.GetElapsedTime(recent.At) > RecentEnough)
        {
            recent = new Recent(revision, System.Diagnostics.Stopwatch.GetTimestamp(), await ListAsync(cancellationToken));
            Volatile.Write(ref _recent, recent);
        }

        return recent.Services;
    }

    /// <summary>Service <paramref name="name"/> from <see cref="ListRecentAsync"/>.</summary>
    public async Task<MeshService?> GetRecentAsync(string name, CancellationToken cancellationToken) =>
        (await ListRecentAsync(cancellationToken)).FirstOrDefault(s => s.Name == name);

    /// <summary>The API's view of a service: a NetworkService object, its endpoints (and what this server relayed for it) under status.</summary>
    public static JsonObject ToJson(MeshService service, ServiceTraffic? traffic = null)
    {
        ArgumentNullException.ThrowIfNull(service);
        var endpoints = new JsonArray();
        foreach (var e in service.Endpoints)
        {
            endpoints.Add((JsonNode)new JsonObject
            {
                ["node"] = e.Node,
                ["app"] = e.App,
                ["revision"] = e.Generation,
                ["site"] = e.Site,
                ["nodeState"] = e.NodeState,
                ["appState"] = e.AppState,
                ["connected"] = e.Connected,
                ["healthy"] = e.Healthy,
                ["answering"] = e.Answering,
                ["address"] = e.Address,
            });
        }

        return new JsonObject
        {
            ["apiVersion"] = ResourceKind.NetworkService.ApiVersion,
            ["kind"] = ResourceKind.NetworkService.Kind,
            ["metadata"] = new JsonObject
            {
                ["name"] = service.Name,
                ["creationTimestamp"] = ResourceJson.FormatTimestamp(service.Created),
            },
            ["spec"] = new JsonObject
            {
                ["address"] = service.Address,
                ["port"] = service.Port,
                ["apps"] = new JsonArray(service.Apps.Select(a => (JsonNode?)JsonValue.Create(a)).ToArray()),
                ["ingress"] = service.Ingress is null ? null : new JsonObject { ["path"] = service.Ingress },
            },
            ["status"] = new JsonObject
            {
                ["healthyEndpoints"] = service.Healthy.Count(),
                ["endpoints"] = endpoints,
                ["clients"] = new JsonArray(service.Clients.Select(c => (JsonNode?)JsonValue.Create(c)).ToArray()),
                ["relayed"] = traffic?.Of(service.Name) is { } counters ? new JsonObject
                {
                    ["dials"] = counters.Relayed,
                    ["open"] = counters.Open,
                    ["unavailable"] = counters.Unavailable,
                    ["notAllowed"] = counters.NotAllowed,
                    ["heals"] = counters.Heals,
                    ["bytesToEndpoints"] = counters.BytesToEndpoints,
                    ["bytesFromEndpoints"] = counters.BytesFromEndpoints,
                } : null,
            },
        };
    }
}
