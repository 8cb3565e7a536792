namespace Outpost.Agent.Sync;

/// <summary>How loudly to report one failed attempt to reach the server.</summary>
internal enum OutageReport
{
    /// <summary>The first failure of an outage: a warning.</summary>
    Warning,

    /// <summary>A summary of the outage so far, at most once per <see cref="OutageLog.SummaryEvery"/>.</summary>
    Summary,

    /// <summary>Anything else: debug level only.</summary>
    Quiet,
}

/// <summary>
/// Decides how loudly each failed connection attempt is logged: the first of an outage as a
/// warning, then a summary at most once a minute, the rest only at debug level. An agent cut off
/// for an hour (offline is normal at the edge) logs a few lines, not one per retry, and says when
/// and after how long it is back.
/// </summary>
internal sealed class OutageLog(TimeProvider time)
{
    /// <summary>How often a continuing outage is summarised.</summary>
    public static readonly TimeSpan SummaryEvery = TimeSpan.FromMinutes(1);

    private DateTimeOffset? _since;
    private DateTimeOffset _lastReported;
    private int _attempts;

    /// <summary>Counts a failed attempt; returns how to report it, the attempts so far and how long the outage has lasted.</summary>
    public (OutageReport Report, int Attempts, TimeSpan Lasted) Failed()
    {
        var now = time.GetUtcNow();
        _attempts++;
        if (_since is not { } since)
        {
            _since = now;
            _lastReported = now;
            return (OutageReport.Warning, _attempts, TimeSpan.Zero);
        }

        if (now - _lastReported >= SummaryEvery)
        {
            _lastReported = now;
            return (OutageReport.Summary, _attempts, now - since);
        }

        return (OutageReport.Quiet, _attempts, now - since);
    }

    /// <summary>The link is back: the failed attempts and how long they lasted, or null when there was no outage.</summary>
    public (int Attempts, TimeSpan Lasted)? Recovered()
    {
        if (_since is not { } since)
        {
            return null;
        }

        var outage = (_attempts, time.GetUtcNow() - since);
        _since = null;
        _attempts = 0;
        return outage;
    }
}
