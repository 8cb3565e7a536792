using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Outpost.Core.Api;
using Outpost.Core.Resources;
using Outpost.Core.Store;

namespace Outpost.Server.Sync;

/// <summary>
/// Watches every node's lease and records each change of its state as an event: NodeReady,
/// NodeNotReady (missed heartbeats, or the stream dropped within the lease) and NodeOffline
/// (lease expired and stream gone). `outpost get events` lists them.
/// </summary>
public sealed partial class NodeMonitor(IControlPlaneStore store, FleetPresence leases, ChangeRouter router, Hosting.Leadership leadership, Hosting.ServerOptions options, TimeProvider time, ILogger<NodeMonitor> logger)
    : BackgroundService
{
    private readonly Dictionary<string, string> _states = new(StringComparer.Ordinal);
    private List<string> _nodes = [];
    private long _nodesAt = -1;

    /// <summary>On the leading replica only.</summary>
    protected override Task ExecuteAsync(CancellationToken stoppingToken) => leadership.RunWhileLeaderAsync(RunAsync, stoppingToken);

    private async Task RunAsync(CancellationToken stoppingToken)
    {
        // A quarter lease between looks: a transition is recorded within that of happening.
        var period = TimeSpan.FromTicks(Math.Clamp(options.NodeLease.Ticks / 4, TimeSpan.FromMilliseconds(100).Ticks, TimeSpan.FromSeconds(5).Ticks));
        using var timer = new PeriodicTimer(period, time);
        do
        {
            try
            {
                await LookAsync(stoppingToken);
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                LogFailed(logger, ex);
            }
        }
        while (await timer.WaitForNextTickAsync(stoppingToken));
    }

    private async Task LookAsync(CancellationToken ct)
    {
        var now = time.GetUtcNow();
        var nodes = await NodeNamesAsync(ct);
        foreach (var gone in _states.Keys.Except(nodes, StringComparer.Ordinal).ToList())
        {
            _states.Remove(gone);
        }

        foreach (var name in nodes)
        {
            var lease = leases.Get(name);
            var state = NodeState.Derive(lease?.Connected == true, lease?.LastHeartbeat, now, options.NodeLease);
            if (!_states.TryGetValue(name, out var previous))
            {
                // First look (a new node, or this server just started): Ready is news, the rest is not yet.
                _states[name] = state;
                if (state != NodeState.Ready)
                {
                    continue;
                }
            }
            else if (previous == state)
            {
                continue;
            }

            _states[name] = state;
            var (type, reason, message) = state switch
            {
                NodeState.Ready => ("Normal", "NodeReady", $"node {name} is connected and beating"),
                NodeState.NotReady when lease?.Connected == true => ("Warning", "NodeNotReady",
                    $"node {name} missed its heartbeats: none for {Describe(now - lease.LastHeartbeat)} (lease {Describe(options.NodeLease)})"),
                NodeState.NotReady => ("Warning", "NodeNotReady", $"node {name} dropped its stream; its lease runs out in {Describe(options.NodeLease - (now - lease!.LastHeartbeat))}"),
                _ => ("Warning", "NodeOffline", $"node {name} is gone: stream closed and lease expired{(lease is null ? "" : $" (last heartbeat {Describe(now - lease.LastHeartbeat)} ago)")}"),
            };
            await store.AppendEventAsync(new EventRecord(0, now, ResourceKind.Node.Kind, name, type, reason, message), ct);
            LogTransition(logger, name, state, message);
        }
    }

    /// <summary>
    /// The fleet's node names, listed again only when a Node has been written since: a node comes
    /// or goes only with a write of it, while heartbeats and status do not. Listing every node
    /// (each with its status) at every look was, with 10,000 idle nodes, megabytes read and thrown
    /// away every few seconds for a list that had not changed; listing them at every change of
    /// anything was the same for each change sent to the fleet.
    /// </summary>
    private async Task<List<string>> NodeNamesAsync(CancellationToken ct)
    {
        var revision = store.Changes.Latest; // before the read: a write during it is seen at the next look
        if (revision != _nodesAt && !router.NodesUnchanged(_nodesAt, revision))
        {
            _nodes = [.. (await store.ListAsync(ResourceKind.Node.Kind, ct)).Items.Select(n => n.Name)];
        }

        _nodesAt = revision;
        return _nodes;
    }

    private static string Describe(TimeSpan span) => span.TotalSeconds < 10
        ? FormattableString.Invariant($"{span.TotalSeconds:0.0}s")
        : Core.Rollouts.RolloutPlanner.Describe(span);

    [LoggerMessage(Level = LogLevel.Information, Message = "Node '{Node}' is {State}: {Message}")]
    private static partial void LogTransition(ILogger logger, string node, string state, string message);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Node monitor failed a look; trying again")]
    private static partial void LogFailed(ILogger logger, Exception exception);
}
