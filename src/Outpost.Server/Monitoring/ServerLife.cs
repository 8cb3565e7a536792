using Microsoft.Extensions.Hosting;
using Outpost.Core.Store;
using Outpost.Server.Hosting;

namespace Outpost.Server.Monitoring;

/// <summary>
/// Leaves a trace of the control plane's own outages: every start is an event saying how long
/// the server was gone, read from a mark it rewrites while it runs (DATA/alive: the last time it
/// was known running). While it was gone the fleet kept serving, but nothing could be deployed,
/// rolled back or alerted on.
/// </summary>
public sealed class ServerLife(IControlPlaneStore store, ServerOptions options) : BackgroundService
{
    /// <summary>How often the mark is rewritten: the outage is dated to within this.</summary>
    public static readonly TimeSpan MarkEvery = TimeSpan.FromSeconds(15);

    /// <summary>A gap longer than this is an outage worth a warning, not a restart.</summary>
    public static readonly TimeSpan Outage = TimeSpan.FromMinutes(1);

    /// <summary>The name of the involved object of the server's own events.</summary>
    public const string Name = "outpost-server";

    private string MarkPath => Path.Combine(options.DataDir, "alive");

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var time = options.TimeProvider;
        await store.AppendEventAsync(StartEvent(ReadMark(), time.GetUtcNow()), stoppingToken);
        using var timer = new PeriodicTimer(MarkEvery, time);
        try
        {
            do
            {
                WriteMark(time.GetUtcNow());
            }
            while (await timer.WaitForNextTickAsync(stoppingToken));
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    private static EventRecord StartEvent(DateTimeOffset? lastAlive, DateTimeOffset now)
    {
        if (lastAlive is not { } last)
        {
            return new EventRecord(0, now, "Server", Name, "Normal", "ServerStarted", "the server started for the first time with this data dir");
        }

        var gone = now - last < TimeSpan.Zero ? TimeSpan.Zero : now - last;
        return new EventRecord(0, now, "Server", Name, gone >= Outage ? "Warning" : "Normal", "ServerStarted",
            $"the server started again, last known running {Core.Rollouts.RolloutPlanner.Describe(gone)} ago (at {last:u}, marked every {MarkEvery.TotalSeconds:0}s); "
            + "meanwhile the fleet kept serving, but nothing could be deployed, rolled back or alerted on");
    }

    private DateTimeOffset? ReadMark()
    {
        try
        {
            return DateTimeOffset.TryParse(File.ReadAllText(MarkPath).Trim(), System.Globalization.CultureInfo.InvariantCulture,
                System.Globalization.DateTimeStyles.RoundtripKind, out var at) ? at : null;
        }
        catch (IOException)
        {
            return null; // no mark: the first start
        }
    }

    private void WriteMark(DateTimeOffset at)
    {
        var temp = MarkPath + ".tmp";
        File.WriteAllText(temp, at.ToString("O", System.Globalization.CultureInfo.InvariantCulture));
        File.Move(temp, MarkPath, overwrite: true);
    }
}
