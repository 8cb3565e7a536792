using Outpost.Agent.Apps;

namespace Outpost.Agent.Monitoring;

/// <summary>
/// Gives memory back once the agent has settled after a start or a deploy. Start-up and
/// compiling allocate a few MB that become garbage at once (configuration, DI, Cranelift's
/// working memory), and a node that then only serves small requests may not collect for
/// hours: the garbage collector keeps that space committed and glibc keeps freed C memory
/// in its arenas. A few seconds after the set of apps last changed, one compacting
/// collection that releases free regions, then malloc_trim, then the working-set trim
/// (<see cref="WorkingSet"/>): the code only the start ran stops being mapped.
/// </summary>
public sealed class MemoryTrim : IDisposable
{
    /// <summary>How long the apps must stay unchanged before trimming.</summary>
    public static readonly TimeSpan Settle = TimeSpan.FromSeconds(3);

    private readonly ITimer _timer;
    private readonly AppRegistry _apps;
    private long _trims;
    private long _unmapped;

    public MemoryTrim(AppRegistry apps, TimeProvider time)
    {
        _apps = apps;
        _timer = time.CreateTimer(_ => Trim(), null, Settle, Timeout.InfiniteTimeSpan);
        apps.AppsChanged += Rearm;
    }

    /// <summary>Trims done since the agent started.</summary>
    public long Trims => Interlocked.Read(ref _trims);

    /// <summary>Bytes of clean code and read-only data the last trim stopped mapping.</summary>
    public long Unmapped => Interlocked.Read(ref _unmapped);

    private void Rearm() => _timer.Change(Settle, Timeout.InfiniteTimeSpan);

    private void Trim()
    {
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Aggressive, blocking: true, compacting: true);
        _ = Core.Memory.NativeHeap.Trim();
        Interlocked.Exchange(ref _unmapped, WorkingSet.Trim());
        Interlocked.Increment(ref _trims);
    }

    public void Dispose()
    {
        _apps.AppsChanged -= Rearm;
        _timer.Dispose();
    }
}
