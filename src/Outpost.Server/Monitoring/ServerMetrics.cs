using System.Globalization;
using System.Text.Json;
using Outpost.Core.Api;
using Outpost.Core.Metrics;
using Outpost.Core.Resources;
using Outpost.Core.Store;
using Outpost.Server.Api;
using Outpost.Server.Sync;

namespace Outpost.Server.Monitoring;

/// <summary>The fleet's metrics in the Prometheus text format, served at GET /metrics.</summary>
public sealed class ServerMetrics(IControlPlaneStore store, ResourceView view, MetricsRecorder recorder, SyncAccounting accounting, IEnumerable<IMetricsSource> sources)
{
    /// <summary>The families that read every node from the store.</summary>
    private static readonly string[] NodeFamilies =
    [
        "outpost_nodes", "outpost_node_ready", "outpost_node_last_heartbeat_timestamp_seconds",
        "outpost_outbox_pending_records", "outpost_outbox_pending_bytes", "outpost_outbox_quota_bytes", "outpost_outbox_dropped_records_total",
    ];

    private static readonly string[] SyncFamilies = ["outpost_sync_messages_total", "outpost_sync_bytes_total"];

    /// <summary>
    /// The exposition; with <paramref name="only"/>, just the families it names (what
    /// <c>/metrics?name[]=...</c> asks), and only their data is gathered: a 10,000-node fleet's
    /// full exposition is hundreds of thousands of series, one node family is a store read.
    /// </summary>
    public async Task<string> RenderAsync(IReadOnlySet<string>? only, CancellationToken cancellationToken)
    {
        var text = new PrometheusText(only);
        // What the node families need of each node, read without rendering it: a scrape of a
        // 10,000-node fleet rendered every node whole (status tree, sync counters, conditions).
        var nodes = Array.Exists(NodeFamilies, text.Wants)
            ? (await store.ListAsync(ResourceKind.Node.Kind, cancellationToken)).Items.Select(ReadNode).ToList()
            : [];
        var states = nodes.GroupBy(n => n.State).ToDictionary(g => g.Key, g => g.Count());
        text.Gauge("outpost_nodes", "Nodes in the fleet by state (Ready, NotReady, Offline).");
        foreach (var state in new[] { NodeState.Ready, NodeState.NotReady, NodeState.Offline })
        {
            text.Sample("outpost_nodes", states.GetValueOrDefault(state), ("state", state));
        }

        text.Gauge("outpost_node_ready", "1 while the node is Ready, else 0.");
        foreach (var node in nodes)
        {
            text.Sample("outpost_node_ready", node.State == NodeState.Ready ? 1 : 0, ("node", node.Name));
        }

        text.Gauge("outpost_node_last_heartbeat_timestamp_seconds", "When the node last beat (Unix time).");
        foreach (var node in nodes)
        {
            if (node.LastHeartbeat is { } at)
            {
                // Whole seconds, as the node's status shows the time.
                text.Sample("outpost_node_last_heartbeat_timestamp_seconds", at.ToUnixTimeSeconds(), ("node", node.Name));
            }
        }

        Usage(text, recorder.Usage);
        Outbox(text, nodes);
        Apps(text, text.WantsAnyStartingWith("outpost_app_") ? recorder.Totals() : []);
        Sync(text, Array.Exists(SyncFamilies, text.Wants) ? accounting.Snapshot() : []);
        text.Gauge("outpost_store_revision", "The control plane store's current revision.").Sample("outpost_store_revision", await store.GetRevisionAsync(cancellationToken));
        IReadOnlyDictionary<string, Core.Rollouts.RolloutState> rollouts = text.Wants("outpost_rollouts") ? await store.ListRolloutsAsync(cancellationToken) : new Dictionary<string, Core.Rollouts.RolloutState>();
        text.Gauge("outpost_rollouts", "Application rollouts by phase.");
        foreach (var phase in Enum.GetValues<Core.Rollouts.RolloutPhase>())
        {
            text.Sample("outpost_rollouts", rollouts.Values.Count(r => r.Phase == phase), ("phase", phase.ToString()));
        }

        foreach (var source in sources)
        {
            await source.WriteAsync(text, cancellationToken);
        }

        return text.ToString();
    }

    private static void Usage(PrometheusText text, IReadOnlyDictionary<string, NodeUsageSample> usage)
    {
        var rows = usage.OrderBy(p => p.Key, StringComparer.Ordinal).ToList();
        void Gauge(string name, string help, Func<NodeUsageSample, double> value)
        {
            text.Gauge(name, help);
            foreach (var (node, sample) in rows)
            {
                text.Sample(name, value(sample), ("node", node));
            }
        }

        Gauge("outpost_node_cpu_ratio", "Busy share of all the node's CPUs over its last heartbeat interval (0 to 1).", u => u.CpuRatio);
        Gauge("outpost_node_cpus", "CPUs the node has.", u => u.CpuCount);
        Gauge("outpost_node_memory_used_bytes", "Memory in use on the node (total minus available).", u => u.MemoryUsedBytes);
        Gauge("outpost_node_memory_total_bytes", "The node's memory.", u => u.MemoryTotalBytes);
        Gauge("outpost_node_disk_used_bytes", "Used space on the filesystem holding the agent's data dir.", u => u.DiskUsedBytes);
        Gauge("outpost_node_disk_total_bytes", "Size of the filesystem holding the agent's data dir.", u => u.DiskTotalBytes);
        Gauge("outpost_agent_data_dir_bytes", "Bytes in the agent's data dir.", u => u.DataDirBytes);
        Gauge("outpost_agent_resident_memory_bytes", "The agent process's resident memory.", u => u.AgentRssBytes);
        Gauge("outpost_agent_cpu_ratio", "CPU the agent used over its last heartbeat interval, as a share of one CPU.", u => u.AgentCpuRatio);
        Gauge("outpost_gateway_open_connections", "Open client connections to the node's gateway.", u => u.OpenConnections);
    }

    private static void Outbox(PrometheusText text, List<NodeRow> nodes)
    {
        var rows = nodes.Where(n => n.Outbox is not null).Select(n => (n.Name, Outbox: n.Outbox!)).ToList();
        void Metric(string name, string type, string help, string field)
        {
            text.Family(name, type, help);
            foreach (var (node, outbox) in rows)
            {
                text.Sample(name, outbox.GetValueOrDefault(field), ("node", node));
            }
        }

        Metric("outpost_outbox_pending_records", "gauge", "Records in the node's outbox waiting for the server's ack, as last reported.", "pendingRecords");
        Metric("outpost_outbox_pending_bytes", "gauge", "Payload bytes in the node's outbox waiting for the server's ack, as last reported.", "pendingBytes");
        Metric("outpost_outbox_quota_bytes", "gauge", "The node's outbox quota.", "quotaBytes");
        Metric("outpost_outbox_dropped_records_total", "counter", "Records the node's outbox overflow policy discarded since the node's first start, as last reported.", "droppedTotal");
    }

    /// <summary>A node as the node families show it: its state and last beat (as the API shows them), and its outbox's numbers as last reported.</summary>
    private sealed record NodeRow(string Name, string State, DateTimeOffset? LastHeartbeat, Dictionary<string, long>? Outbox);

    private NodeRow ReadNode(StoredResource node)
    {
        string? beat = null;
        Dictionary<string, long>? outbox = null;
        if (node.StatusJson is { } json)
        {
            using var status = JsonDocument.Parse(json);
            if (status.RootElement.ValueKind == JsonValueKind.Object)
            {
                if (status.RootElement.TryGetProperty("lastHeartbeatTime", out var at) && at.ValueKind == JsonValueKind.String)
                {
                    beat = at.GetString();
                }

                if (status.RootElement.TryGetProperty("outbox", out var reported) && reported.ValueKind == JsonValueKind.Object)
                {
                    outbox = new Dictionary<string, long>(StringComparer.Ordinal);
                    foreach (var field in reported.EnumerateObject())
                    {
                        if (field.Value.ValueKind == JsonValueKind.Number && field.Value.TryGetInt64(out var number))
                        {
                            outbox[field.Name] = number;
                        }
                    }
                }
            }
        }

        var (state, lastHeartbeat) = view.NodeLivenessOf(node.Name, beat);
        return new NodeRow(node.Name, state, lastHeartbeat, outbox);
    }

    private static void Apps(PrometheusText text, IReadOnlyList<(string App, long Revision, string Node, RequestStats Stats)> totals)
    {
        static string Rev(long revision) => revision.ToString(CultureInfo.InvariantCulture);
        text.Counter("outpost_app_requests_total", "Answers app revisions produced on each node, reported since the server started, by class: success (below 400), client_error (4xx), server_error (5xx).");
        foreach (var (app, revision, node, stats) in totals)
        {
            text.Sample("outpost_app_requests_total", stats.Requests - stats.ClientErrors - stats.ServerErrors, ("app", app), ("revision", Rev(revision)), ("node", node), ("class", "success"));
            text.Sample("outpost_app_requests_total", stats.ClientErrors, ("app", app), ("revision", Rev(revision)), ("node", node), ("class", "client_error"));
            text.Sample("outpost_app_requests_total", stats.ServerErrors, ("app", app), ("revision", Rev(revision)), ("node", node), ("class", "server_error"));
        }

        text.Counter("outpost_app_timeouts_total", "Requests that ran past the app's limits.timeoutMs, reported since the server started.");
        foreach (var (app, revision, node, stats) in totals)
        {
            text.Sample("outpost_app_timeouts_total", stats.Timeouts, ("app", app), ("revision", Rev(revision)), ("node", node));
        }

        text.Counter("outpost_app_limit_hits_total", "Requests that ran into a limit other than the timeout (memory, response size, concurrency, instance slots, body size), reported since the server started.");
        foreach (var (app, revision, node, stats) in totals)
        {
            text.Sample("outpost_app_limit_hits_total", stats.LimitHits, ("app", app), ("revision", Rev(revision)), ("node", node));
        }

        var byRevision = totals.GroupBy(t => (t.App, t.Revision)).Select(g =>
        {
            var sum = new RequestStats();
            foreach (var t in g)
            {
                sum.Add(t.Stats);
            }

            return (g.Key.App, g.Key.Revision, Stats: sum);
        }).ToList();
        text.Histogram("outpost_app_request_duration_seconds", "Time from a request reaching a node's gateway to the app's answer, across the fleet, reported since the server started.");
        foreach (var (app, revision, stats) in byRevision)
        {
            text.HistogramSamples("outpost_app_request_duration_seconds", stats.Buckets, stats.LatencySumSeconds, ("app", app), ("revision", Rev(revision)));
        }

        text.Gauge("outpost_app_instance_memory_peak_bytes", "The largest linear memory one instance of the revision reached on any node.");
        foreach (var (app, revision, stats) in byRevision)
        {
            text.Sample("outpost_app_instance_memory_peak_bytes", stats.MemoryPeakBytes, ("app", app), ("revision", Rev(revision)));
        }
    }

    private static void Sync(PrometheusText text, IReadOnlyList<(string Node, string Direction, string Kind, long Messages, long Bytes)> counters)
    {
        text.Counter("outpost_sync_messages_total", "Messages on each node's sync stream since the server started, by direction (as the server sees it) and kind.");
        foreach (var c in counters)
        {
            text.Sample("outpost_sync_messages_total", c.Messages, ("node", c.Node), ("direction", c.Direction), ("kind", c.Kind));
        }

        text.Counter("outpost_sync_bytes_total", "Protobuf bytes on each node's sync stream since the server started, by direction and kind.");
        foreach (var c in counters)
        {
            text.Sample("outpost_sync_bytes_total", c.Bytes, ("node", c.Node), ("direction", c.Direction), ("kind", c.Kind));
        }
    }
}

/// <summary>A part of the server that adds its own families to /metrics (logs, alerts).</summary>
public interface IMetricsSource
{
    Task WriteAsync(PrometheusText text, CancellationToken cancellationToken);
}
