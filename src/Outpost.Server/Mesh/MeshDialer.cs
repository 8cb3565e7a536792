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
public sealed partial class MeshDialer(WireRelay relay, MeshRegistry registry, IControlPlaneStore store, ILogger<MeshDialer> logger)
{
    /// <summary>The request header of a Wire call that dials a service.</summary>
    public const string DialHeader = "outpost-dial";

    /// <summary>A node the dialling node could not reach a moment ago (a retry): not picked.</summary>
    public const string AvoidHeader = "outpost-avoid";

    private long _relayed;
    private long _refused;

    public long Relayed => Interlocked.Read(ref _relayed);

    public long Refused => Interlocked.Read(ref _refused);

    public async Task DialAsync(string node, string service, IAsyncStreamReader<WireFrame> requests, IServerStreamWriter<WireFrame> responses, ServerCallContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var ct = context.CancellationToken;
        await using var caller = new WireStream(requests, responses);
        var known = await registry.GetRecentAsync(service, ct);
        if (known is null)
        {
            Interlocked.Increment(ref _refused);
            await caller.FailAsync($"service '{service}' not found: no app exposes it");
            return;
        }

        var site = (await store.GetAsync(ResourceKind.Node.Kind, node, ct))?.Labels.GetValueOrDefault(MeshRegistry.SiteLabel);
        var avoid = context.RequestHeaders.GetValue(AvoidHeader);
        var candidates = known.Healthy.Where(e => e.Node != node && e.Node != avoid)
            .OrderBy(e => site is not null && e.Site == site ? 0 : 1).ThenBy(_ => Random.Shared.Next()).ToList();
        var failures = new List<string>();
        foreach (var endpoint in candidates.Take(2))
        {
            WireStream target;
            try
            {
                target = await relay.OpenAsync(endpoint.Node, "app/" + endpoint.App, ct);
            }
            catch (WireUnavailableException ex)
            {
                failures.Add(ex.Message);
                continue;
            }

            Interlocked.Increment(ref _relayed);
            LogRelayed(logger, node, service, endpoint.Node);
            await using (target)
            {
                await JoinAsync(caller, target, ct);
            }

            return;
        }

        Interlocked.Increment(ref _refused);
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

    [LoggerMessage(Level = LogLevel.Debug, Message = "Node {Node} dialed service {Service}: relayed to node {Endpoint}")]
    private static partial void LogRelayed(ILogger logger, string node, string service, string endpoint);
}
