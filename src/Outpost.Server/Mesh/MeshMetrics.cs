using Outpost.Core.Metrics;
using Outpost.Server.Monitoring;

namespace Outpost.Server.Mesh;

/// <summary>The mesh on the server's /metrics: wires through the nodes' connections, and requests per service.</summary>
public sealed class MeshMetrics(WireRelay relay, MeshProxy proxy, ServiceTraffic traffic) : IMetricsSource
{
    public Task WriteAsync(PrometheusText text, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(text);
        text.Gauge("outpost_mesh_wires_open", "vWires open now through the nodes' own connections.")
            .Sample("outpost_mesh_wires_open", relay.Open);
        text.Counter("outpost_mesh_wires_total", "vWires asked of nodes, by result: opened, or failed (node not connected, or no answer in time).");
        text.Sample("outpost_mesh_wires_total", relay.Opened, ("result", "opened"));
        text.Sample("outpost_mesh_wires_total", relay.Failed, ("result", "failed"));
        text.Counter("outpost_mesh_wire_bytes_total", "Bytes carried by closed vWires, by direction.");
        text.Sample("outpost_mesh_wire_bytes_total", relay.BytesToNodes, ("direction", "to_nodes"));
        text.Sample("outpost_mesh_wire_bytes_total", relay.BytesFromNodes, ("direction", "from_nodes"));
        text.Counter("outpost_mesh_probes_total", "Liveness probes of nodes that serve mesh endpoints, by event: sent, and missed (a node went silent past the probe timeout and was picked last until it answered again).");
        text.Sample("outpost_mesh_probes_total", relay.ProbesSent, ("event", "sent"));
        text.Sample("outpost_mesh_probes_total", relay.ProbesMissed, ("event", "missed"));
        text.Counter("outpost_mesh_service_requests_total", "Requests forwarded to a service, by way in (proxy: /proxy/services, ingress: the public listener) and result (reached an endpoint, or unavailable).");
        foreach (var (service, via, requests, unavailable) in proxy.Served)
        {
            text.Sample("outpost_mesh_service_requests_total", requests, ("service", service), ("via", via), ("result", "reached"));
            text.Sample("outpost_mesh_service_requests_total", unavailable, ("service", service), ("via", via), ("result", "unavailable"));
        }

        text.Counter("outpost_mesh_dials_total", "Nodes' dials of a service relayed by the server, by service and result: relayed, unavailable (no endpoint could be reached), not_allowed (the node is not among the service's clients).");
        var services = traffic.All.ToList();
        foreach (var (service, counters) in services)
        {
            text.Sample("outpost_mesh_dials_total", counters.Relayed, ("service", service), ("result", "relayed"));
            text.Sample("outpost_mesh_dials_total", counters.Unavailable, ("service", service), ("result", "unavailable"));
            text.Sample("outpost_mesh_dials_total", counters.NotAllowed, ("service", service), ("result", "not_allowed"));
        }

        text.Gauge("outpost_mesh_dials_open", "Nodes' relayed dials of a service open now.");
        foreach (var (service, counters) in services)
        {
            text.Sample("outpost_mesh_dials_open", counters.Open, ("service", service));
        }

        text.Counter("outpost_mesh_dial_bytes_total", "Bytes carried by closed relayed dials of a service, by direction.");
        foreach (var (service, counters) in services)
        {
            text.Sample("outpost_mesh_dial_bytes_total", counters.BytesToEndpoints, ("service", service), ("direction", "to_endpoints"));
            text.Sample("outpost_mesh_dial_bytes_total", counters.BytesFromEndpoints, ("service", service), ("direction", "from_endpoints"));
        }

        text.Counter("outpost_mesh_heals_total", "Relayed dials whose first endpoint failed and another answered.");
        foreach (var (service, counters) in services)
        {
            text.Sample("outpost_mesh_heals_total", counters.Heals, ("service", service));
        }

        text.Counter("outpost_mesh_ingress_unrouted_total", "Ingress requests for a path no service is published at (answered 404).")
            .Sample("outpost_mesh_ingress_unrouted_total", proxy.IngressUnrouted);
        return Task.CompletedTask;
    }
}
