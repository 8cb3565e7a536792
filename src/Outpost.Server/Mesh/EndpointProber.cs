using Microsoft.Extensions.Hosting;

namespace Outpost.Server.Mesh;

/// <summary>
/// Liveness of the nodes that serve mesh endpoints, as NSM checks its wires: every
/// <see cref="WireRelay.ProbeInterval"/> each linked endpoint node gets a probe on its sync stream;
/// one left unanswered past <see cref="WireRelay.ProbeTimeout"/> makes the node the relay's last
/// choice (and shows in <c>describe service</c>) until it answers again, so a hung node costs no
/// wire its dial timeout. A node with no endpoint is never probed: its heartbeats are enough.
/// </summary>
public sealed class EndpointProber(WireRelay relay, MeshPublisher publisher) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(WireRelay.ProbeInterval);
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken))
            {
                foreach (var node in publisher.EndpointNodes)
                {
                    relay.Probe(node, stoppingToken);
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // Stopping.
        }
    }
}
