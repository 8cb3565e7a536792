using System.Globalization;

namespace Outpost.Core.Sync;

/// <summary>
/// A hybrid logical clock stamp: physical milliseconds, a counter for events within the
/// same millisecond (or while the wall clock lags), and the writer's id to break ties, so
/// any two stamps from different writers are strictly ordered.
/// </summary>
public readonly record struct HlcTimestamp(long WallMs, int Counter, string Origin) : IComparable<HlcTimestamp>
{
    public int CompareTo(HlcTimestamp other)
    {
        var byWall = WallMs.CompareTo(other.WallMs);
        if (byWall != 0)
        {
            return byWall;
        }

        var byCounter = Counter.CompareTo(other.Counter);
        return byCounter != 0 ? byCounter : string.CompareOrdinal(Origin, other.Origin);
    }

    public static bool operator <(HlcTimestamp left, HlcTimestamp right) => left.CompareTo(right) < 0;

    public static bool operator >(HlcTimestamp left, HlcTimestamp right) => left.CompareTo(right) > 0;

    public static bool operator <=(HlcTimestamp left, HlcTimestamp right) => left.CompareTo(right) <= 0;

    public static bool operator >=(HlcTimestamp left, HlcTimestamp right) => left.CompareTo(right) >= 0;

    /// <summary>"wallMs.counter.origin", sortable as text only per origin; compare stamps, not strings.</summary>
    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"{WallMs}.{Counter}.{Origin}");

    public static HlcTimestamp Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var parts = text.Split('.', 3);
        if (parts.Length != 3 || !long.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out var wall)
            || !int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out var counter) || parts[2].Length == 0)
        {
            throw new FormatException($"'{text}' is not a hybrid logical clock stamp (wallMs.counter.origin)");
        }

        return new HlcTimestamp(wall, counter, parts[2]);
    }
}

/// <summary>
/// Issues stamps that never go backwards even when the wall clock does, and that follow any
/// stamp observed from elsewhere (Kulkarni et al., "Logical Physical Clocks", 2014).
/// </summary>
public sealed class HybridLogicalClock(string origin, TimeProvider time)
{
    private readonly Lock _lock = new();
    private long _wall;
    private int _counter;

    public string Origin { get; } = origin;

    /// <summary>A stamp for a local write.</summary>
    public HlcTimestamp Now()
    {
        lock (_lock)
        {
            var physical = time.GetUtcNow().ToUnixTimeMilliseconds();
            if (physical > _wall)
            {
                _wall = physical;
                _counter = 0;
            }
            else
            {
                _counter++;
            }

            return new HlcTimestamp(_wall, _counter, Origin);
        }
    }

    /// <summary>Moves the clock past a stamp received from another writer, and returns the local stamp for the receipt.</summary>
    public HlcTimestamp Observe(HlcTimestamp remote)
    {
        lock (_lock)
        {
            var physical = time.GetUtcNow().ToUnixTimeMilliseconds();
            var wall = Math.Max(Math.Max(_wall, remote.WallMs), physical);
            if (wall == _wall && wall == remote.WallMs)
            {
                _counter = Math.Max(_counter, remote.Counter) + 1;
            }
            else if (wall == _wall)
            {
                _counter++;
            }
            else if (wall == remote.WallMs)
            {
                _counter = remote.Counter + 1;
            }
            else
            {
                _counter = 0;
            }

            _wall = wall;
            return new HlcTimestamp(_wall, _counter, Origin);
        }
    }
}
