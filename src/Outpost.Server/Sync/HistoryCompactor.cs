using Microsoft.Extensions.Hosting;
using Outpost.Core.Store;
using Outpost.Server.Hosting;

namespace Outpost.Server.Sync;

/// <summary>
/// Keeps the change log to the last <see cref="ServerOptions.HistoryRetention"/> changes.
/// Nodes that acked a revision older than what remains get a full snapshot on reconnect.
/// </summary>
public sealed class HistoryCompactor(IControlPlaneStore store, ChangeFeed feed, Leadership leadership, ServerOptions options) : BackgroundService
{
    /// <summary>On the leading replica only.</summary>
    protected override Task ExecuteAsync(CancellationToken stoppingToken) => leadership.RunWhileLeaderAsync(RunAsync, stoppingToken);

    private async Task RunAsync(CancellationToken stoppingToken)
    {
        var seen = 0L;
        try
        {
            while (!stoppingToken.IsCancellationRequested)
            {
                seen = await feed.WaitAfterAsync(seen, stoppingToken);
                var through = seen - options.HistoryRetention;
                if (through > await store.GetCompactedRevisionAsync(stoppingToken))
                {
                    await store.CompactChangesAsync(through, stoppingToken);
                }

                await store.PruneAppRevisionsAsync(options.RevisionHistory, stoppingToken);
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }
}
