using Outpost.Agent.Apps;
using Outpost.Agent.Hosting;
using Outpost.Agent.State;
using Outpost.Agent.Sync;
using Outpost.Core.Metrics;

namespace Outpost.Agent.Monitoring;

/// <summary>The node's own metrics in the Prometheus text format, served at /_outpost/metrics on the gateway.</summary>
public sealed class AgentMetrics(AppRegistry apps, NodeUsageProbe usage, LocalDataStore data, SyncClient sync, AgentStore store, AgentOptions options, Mesh.NodeWires wires, Mesh.MeshClient mesh, Mesh.MeshPeers peers, Wasm.Hosting.WasmHost wasm, Apps.AgentRuntimes runtimes, MemoryTrim trim)
{
    public string Render()
    {
        var text = new PrometheusText();
        var node = ("node", options.NodeName);
        var loaded = apps.Loaded.OrderBy(a => a.Name, StringComparer.Ordinal).Select(a => (App: a, Totals: a.Counters.Totals())).ToList();

        text.Counter("outpost_app_requests_total", "Answers an app revision produced on this node since it was loaded, by class: success (below 400), client_error (4xx), server_error (5xx).");
        foreach (var (app, totals) in loaded)
        {
            var ok = totals.Requests - totals.ClientErrors - totals.ServerErrors;
            foreach (var (code, count) in new[] { ("success", ok), ("client_error", totals.ClientErrors), ("server_error", totals.ServerErrors) })
            {
                text.Sample("outpost_app_requests_total", count, node, ("app", app.Name), ("revision", Revision(app)), ("class", code));
            }
        }

        text.Histogram("outpost_app_request_duration_seconds", "Time from the request reaching the gateway to the app's answer, including any wait for a concurrency slot.");
        foreach (var (app, totals) in loaded)
        {
            text.HistogramSamples("outpost_app_request_duration_seconds", totals.Buckets, totals.LatencySumSeconds, node, ("app", app.Name), ("revision", Revision(app)));
        }

        text.Counter("outpost_app_timeouts_total", "Requests that ran past the app's limits.timeoutMs (answered 504).");
        foreach (var (app, totals) in loaded)
        {
            text.Sample("outpost_app_timeouts_total", totals.Timeouts, node, ("app", app.Name), ("revision", Revision(app)));
        }

        text.Counter("outpost_app_limit_hits_total", "Requests that ran into a limit other than the timeout, by limit.");
        foreach (var (app, _) in loaded)
        {
            foreach (var (kind, count) in app.Counters.LimitHits())
            {
                text.Sample("outpost_app_limit_hits_total", count, node, ("app", app.Name), ("revision", Revision(app)), ("limit", kind.ToString().ToLowerInvariant()));
            }
        }

        text.Gauge("outpost_app_instance_memory_peak_bytes", "The largest linear memory one instance of the revision reached.");
        foreach (var (app, totals) in loaded)
        {
            text.Sample("outpost_app_instance_memory_peak_bytes", totals.MemoryPeakBytes, node, ("app", app.Name), ("revision", Revision(app)));
        }

        text.Gauge("outpost_app_info", "1 per app revision loaded on this node, with its state.");
        foreach (var (name, status) in apps.Status.OrderBy(p => p.Key, StringComparer.Ordinal))
        {
            text.Sample("outpost_app_info", 1, node, ("app", name), ("revision", status.Generation.ToString(System.Globalization.CultureInfo.InvariantCulture)), ("state", status.State));
        }

        var sample = usage.Sample();
        text.Gauge("outpost_node_cpu_ratio", "Busy share of all the node's CPUs since the previous sample (0 to 1).").Sample("outpost_node_cpu_ratio", sample.CpuRatio, node);
        text.Gauge("outpost_node_cpus", "CPUs the node has.").Sample("outpost_node_cpus", sample.CpuCount, node);
        text.Gauge("outpost_node_memory_used_bytes", "Memory in use on the node (total minus available).").Sample("outpost_node_memory_used_bytes", sample.MemoryUsedBytes, node);
        text.Gauge("outpost_node_memory_total_bytes", "The node's memory.").Sample("outpost_node_memory_total_bytes", sample.MemoryTotalBytes, node);
        text.Gauge("outpost_node_disk_used_bytes", "Used space on the filesystem holding the agent's data dir.").Sample("outpost_node_disk_used_bytes", sample.DiskUsedBytes, node);
        text.Gauge("outpost_node_disk_total_bytes", "Size of the filesystem holding the agent's data dir.").Sample("outpost_node_disk_total_bytes", sample.DiskTotalBytes, node);
        text.Gauge("outpost_agent_data_dir_bytes", "Bytes in the agent's data dir.").Sample("outpost_agent_data_dir_bytes", sample.DataDirBytes, node);
        text.Gauge("outpost_agent_resident_memory_bytes", "The agent process's resident memory.").Sample("outpost_agent_resident_memory_bytes", sample.AgentRssBytes, node);
        var gc = GC.GetGCMemoryInfo();
        text.Gauge("outpost_agent_managed_heap_bytes", "The agent's managed heap after its last garbage collection.").Sample("outpost_agent_managed_heap_bytes", gc.HeapSizeBytes, node);
        text.Gauge("outpost_agent_managed_committed_bytes", "Memory the agent's garbage collector holds committed (heap, free space kept for reuse, bookkeeping).").Sample("outpost_agent_managed_committed_bytes", gc.TotalCommittedBytes, node);
        text.Gauge("outpost_agent_unmapped_bytes", "Code and read-only data of the agent's binary and libraries its last memory trim stopped mapping (what still runs maps back on use).")
            .Sample("outpost_agent_unmapped_bytes", trim.Unmapped, node);
        text.Counter("outpost_agent_gc_total", "Garbage collections in the agent since it started.").Sample("outpost_agent_gc_total", GC.CollectionCount(0), node);
        var (inChild, here) = wasm.Compiled;
        text.Counter("outpost_agent_modules_compiled_total", "Modules compiled since the agent started (not loaded from the precompiled cache), by where: child (the compiler process) or agent (in the agent's own process).");
        text.Sample("outpost_agent_modules_compiled_total", inChild, node, ("where", "child"));
        text.Sample("outpost_agent_modules_compiled_total", here, node, ("where", "agent"));
        text.Counter("outpost_agent_compiler_failures_total", "Compiles the compiler process could not do (not started, crashed, stopped), each then done in the agent.").Sample("outpost_agent_compiler_failures_total", wasm.ChildFailures, node);
        if (OperatingSystem.IsLinux() && runtimes.Containers is { } containers)
        {
            text.Counter("outpost_agent_image_bytes_fetched_total", "Bytes of image blobs (manifests, configs, layers) this node fetched from the server since the agent started; a blob already here is not fetched again.")
                .Sample("outpost_agent_image_bytes_fetched_total", containers.BytesFetched, node);
            text.Gauge("outpost_agent_containers", "Containers running on this node for its container apps (revisions kept warm on probation included).")
                .Sample("outpost_agent_containers", containers.Running, node);
        }

        text.Gauge("outpost_agent_cpu_ratio", "CPU the agent used since the previous sample, as a share of one CPU.").Sample("outpost_agent_cpu_ratio", sample.AgentCpuRatio, node);
        text.Gauge("outpost_gateway_open_connections", "Open client connections to the node's gateway.").Sample("outpost_gateway_open_connections", sample.OpenConnections, node);

        var outbox = data.Stats;
        text.Gauge("outpost_outbox_pending_records", "Records in the outbox waiting for the server's ack.").Sample("outpost_outbox_pending_records", outbox.PendingRecords, node);
        text.Gauge("outpost_outbox_pending_bytes", "Payload bytes in the outbox waiting for the server's ack.").Sample("outpost_outbox_pending_bytes", outbox.PendingBytes, node);
        text.Gauge("outpost_outbox_quota_bytes", "The outbox's quota.").Sample("outpost_outbox_quota_bytes", outbox.QuotaBytes, node);
        text.Counter("outpost_outbox_dropped_records_total", "Records the outbox's overflow policy discarded since the node's first start.").Sample("outpost_outbox_dropped_records_total", outbox.DroppedTotal, node);

        text.Gauge("outpost_agent_connected", "1 while the sync stream to the server is open.").Sample("outpost_agent_connected", sync.Connected ? 1 : 0, node);
        text.Gauge("outpost_agent_applied_revision", "The desired-state revision the node has durably applied.").Sample("outpost_agent_applied_revision", store.AppliedRevision, node);
        SyncCounters(text, sync.Counters, node);
        text.Gauge("outpost_node_wires_open", "vWires open between this node and the server (the node's end: its gateway, an app as a service endpoint, or a forwarded port).")
            .Sample("outpost_node_wires_open", wires.Open, node);
        text.Counter("outpost_node_wires_total", "vWires the server asked this node for, by result: opened, failed (the target could not be reached here), not_allowed (a relayed dial from a node the service does not admit).");
        text.Sample("outpost_node_wires_total", wires.Opened, node, ("result", "opened"));
        text.Sample("outpost_node_wires_total", wires.Failed, node, ("result", "failed"));
        text.Sample("outpost_node_wires_total", wires.NotAllowed, node, ("result", "not_allowed"));
        text.Counter("outpost_node_mesh_connections_total", "Connections to mesh services opened from this node (service addresses and apps' http-out), by route: local (an app of this node), direct (a node of its site), relayed (through the server), refused (no endpoint reachable), not_allowed (this node is not among the service's clients); healed counts those that went elsewhere after an endpoint failed.");
        foreach (var (service, counts) in mesh.Connections)
        {
            for (var i = 0; i < Mesh.MeshClient.Routes.Length; i++)
            {
                text.Sample("outpost_node_mesh_connections_total", counts[i], node, ("service", service), ("route", Mesh.MeshClient.Routes[i]));
            }
        }

        text.Counter("outpost_node_mesh_direct_total", "Direct wires between this node and nodes of its site, by event: dialed and dial_failed (this node dialling; a failure passes the node over for 2 s), accepted and refused (dialled here: another CA, or no endpoint here).");
        text.Sample("outpost_node_mesh_direct_total", peers.Dialed, node, ("event", "dialed"));
        text.Sample("outpost_node_mesh_direct_total", peers.DialFailed, node, ("event", "dial_failed"));
        text.Sample("outpost_node_mesh_direct_total", peers.Accepted, node, ("event", "accepted"));
        text.Sample("outpost_node_mesh_direct_total", peers.Refused, node, ("event", "refused"));
        text.Gauge("outpost_node_mesh_peer_up", "Same-site nodes this node may dial directly, probed every 250 ms: 1 while one answers, 0 while it fails its probes (new wires then go elsewhere).");
        foreach (var (peer, answering) in peers.Probed)
        {
            text.Sample("outpost_node_mesh_peer_up", answering ? 1 : 0, node, ("peer", peer));
        }

        text.Counter("outpost_node_mesh_probes_missed_total", "Times a probed same-site node went from answering to failing its probes.")
            .Sample("outpost_node_mesh_probes_missed_total", peers.ProbesMissed, node);
        return text.ToString();
    }

    private static void SyncCounters(PrometheusText text, IReadOnlyDictionary<string, (long Messages, long Bytes)> counters, (string, string) node)
    {
        var rows = counters.OrderBy(p => p.Key, StringComparer.Ordinal)
            .Select(p => (Direction: p.Key[..p.Key.IndexOf(':', StringComparison.Ordinal)], Kind: p.Key[(p.Key.IndexOf(':', StringComparison.Ordinal) + 1)..], p.Value))
            .ToList();
        text.Counter("outpost_sync_messages_total", "Messages on the sync stream since the agent started, by direction and kind.");
        foreach (var row in rows)
        {
            text.Sample("outpost_sync_messages_total", row.Value.Messages, node, ("direction", row.Direction), ("kind", row.Kind));
        }

        text.Counter("outpost_sync_bytes_total", "Protobuf bytes on the sync stream since the agent started, by direction and kind.");
        foreach (var row in rows)
        {
            text.Sample("outpost_sync_bytes_total", row.Value.Bytes, node, ("direction", row.Direction), ("kind", row.Kind));
        }
    }

    private static string Revision(LoadedApp app) => app.Version.Generation.ToString(System.Globalization.CultureInfo.InvariantCulture);
}
