namespace Outpost.Agent.Sync;

/// <summary>
/// Exponential backoff with full jitter (a random delay up to the current ceiling), so a
/// fleet that lost its server does not reconnect in lockstep when it returns.
/// </summary>
public sealed class Backoff(TimeSpan initial, TimeSpan max, Random? random = null)
{
    private readonly Random _random = random ?? Random.Shared;
    private int _attempt;

    public TimeSpan Next()
    {
        var ceiling = Math.Min(max.TotalMilliseconds, initial.TotalMilliseconds * Math.Pow(2, Math.Min(_attempt, 30)));
        _attempt++;
        return TimeSpan.FromMilliseconds(Math.Max(initial.TotalMilliseconds / 2, _random.NextDouble() * ceiling));
    }

    public void Reset() => _attempt = 0;
}
