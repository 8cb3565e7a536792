using Grpc.Core;
using Microsoft.Extensions.Logging;
using Outpost.Core.Resources;
using Outpost.Core.Store;
using Outpost.Protocol;

namespace Outpost.Server.Mesh;

/// <summary>
/// A node's wire to a service, relayed: the server picks a healthy endpoint (on the caller's own
/// site first, never the caller itself, which would have served it locally), opens a wire to that
/// node and copies bytes between the two until both sides are done, half-closes included.
/// </summary>
public sealed partial class MeshDialer(WireRelay relay, MeshRegistry registry, IControlPlaneStore store, ServiceTraffic traffic, ILogger<MeshDialer> logger)
{
    /// <summary>The request header of a Wire call that dials a service.</summary>
    public const string DialHeader = "outpost-dial";

    /// <summary>Nodes (comma-separated) the dialling node could not reach a moment ago: picked last.</summary>
    public const string AvoidHeader = "outpost-avoid";

    /// <summary>How long an endpoint's node has to answer before the next endpoint is tried: a live node answers in milliseconds, a hung one never.</summary>
    public static readonly TimeSpan DialAcceptTimeout = TimeSpan.FromSeconds(1);


    public async Task DialAsync(string node, string service, IAsyncStreamReader<WireFrame> requests, IServerStreamWriter<WireFrame> responses, ServerCallContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var ct = context.CancellationToken;
        await using var caller = new WireStream(requests, responses);
        var known = await registry.GetRecentAsync(service, ct);
        if (known is null)
        {
            await caller.FailAsync($"service '{service}' not found: no app exposes it");
            return;
        }

        var counters = traffic.Of(service);
        if (!known.Clients.Contains(node))
        {
            counters.CountNotAllowed();
            LogNotAllowed(logger, node, service);
            await caller.FailAsync(MeshRules.NotAllowed(node, service));
            return;
        }

        var site = (await store.GetAsync(ResourceKind.Node.Kind, node, ct))?.Labels.GetValueOrDefault(MeshRegistry.SiteLabel);
        var avoid = context.RequestHeaders.GetValue(AvoidHeader)?.Split(',') ?? [];
        // Nodes the caller could not reach go last: tried only when nothing else is left (a link between two sites may be down while both reach the server).
        var candidates = known.Healthy.Where(e => e.Node != node)
            .OrderBy(e => avoid.Contains(e.Node) || relay.IsUnresponsive(e.Node) ? 1 : 0).ThenBy(e => site is not null && e.Site == site ? 0 : 1).ThenBy(_ => Random.Shared.Next()).ToList();
        var failures = new List<string>();
        var tries = candidates.Take(2).ToList();
        foreach (var endpoint in tries)
        {
            // A short wait only when another endpoint is left to try: a loaded node is still better than none.
            var wait = endpoint == tries[^1] ? WireRelay.AcceptTimeout : DialAcceptTimeout;
            WireStream target;
            try
            {
                target = await relay.OpenAsync(endpoint.Node, "app/" + endpoint.App, ct, caller: node, service: service, acceptTimeout: wait);
            }
            catch (WireUnavailableException ex)
            {
                failures.Add(ex.Message);
                continue;
            }

            counters.Opened(failedFirst: failures.Count);
            LogRelayed(logger, node, service, endpoint.Node);
            await using (target)
            {
                try
                {
                    await JoinAsync(caller, target, ct);
                }
                finally
                {
                    counters.Closed(toEndpoint: target.BytesWritten, fromEndpoint: target.BytesRead);
                }
            }

            return;
        }

        counters.CountUnavailable();
        await caller.FailAsync(failures.Count == 0
            ? $"service '{service}' has no healthy endpoint on another node"
            : $"service '{service}': no endpoint could be reached ({string.Join("; ", failures)})");
    }

    /// <summary>Copies both ways, each direction ending with a half-close, until both are done.</summary>
    private static async Task JoinAsync(WireStream a, WireStream b, CancellationToken ct)
    {
        try
        {
            await Core.Net.Pump.BothAsync(
                token => Core.Net.Pump.CopyAsync(a, b, () => b.ShutdownWriteAsync(token), flushEach: false, token),
                token => Core.Net.Pump.CopyAsync(b, a, () => a.ShutdownWriteAsync(token), flushEach: false, token),
                ct);
        }
        catch (Exception ex) when (ex is IOException or OperationCanceledException or RpcException or ObjectDisposedException or InvalidOperationException)
        {
            // One side went away: both wires end.
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Refused node {Node} a wire to service {Service}: not among its clients")]
    private static partial void LogNotAllowed(ILogger logger, string node, string service);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Node {Node} dialed service {Service}: relayed to node {Endpoint}")]
    private static partial void LogRelayed(ILogger logger, string node, string service, string endpoint);
}
