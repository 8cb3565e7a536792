namespace Outpost.Wasm.Hosting;

/// <summary>
/// A periodic callback that runs only while there is work: the first <see cref="Enter"/> starts
/// it, and the first tick that finds nobody in stops it. An idle node then has no timer waking it
/// up (a 10 ms tick costs an idle process a few percent of a core, which adds up on a small device
/// or a hundred agents on one machine), while a busy one never touches the timer: entering and
/// leaving are an interlocked count each, not a timer change under the timer queue's lock per request.
/// </summary>
public sealed class ActivityTimer : IDisposable
{
    private readonly Lock _lock = new();
    private readonly ITimer _timer;
    private readonly TimeSpan _period;
    private readonly Action? _idle;
    private int _active;
    private int _running;
    private volatile bool _disposed;

    /// <summary>
    /// Calls <paramref name="tick"/> every <paramref name="period"/> while in use, and
    /// <paramref name="idle"/> (under the lock) from the first tick after the last user left.
    /// </summary>
    public ActivityTimer(TimeProvider time, TimeSpan period, Action tick, Action? idle = null)
    {
        ArgumentNullException.ThrowIfNull(time);
        ArgumentNullException.ThrowIfNull(tick);
        _period = period;
        _idle = idle;
        _timer = time.CreateTimer(_ =>
        {
            if (!_disposed)
            {
                tick();
                StopWhenIdle();
            }
        }, null, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
    }

    public void Enter()
    {
        // The increment is a full fence, so this read comes after it; StopWhenIdle clears the flag
        // before its own fenced read of the count. Of an Enter and a stopping tick that race, at
        // least one sees the other: the tick keeps the timer, or the Enter starts it again.
        Interlocked.Increment(ref _active);
        if (Volatile.Read(ref _running) == 0)
        {
            lock (_lock)
            {
                if (_running == 0)
                {
                    _running = 1;
                    _timer.Change(_period, _period);
                }
            }
        }
    }

    public void Exit() => Interlocked.Decrement(ref _active);

    private void StopWhenIdle()
    {
        if (Volatile.Read(ref _active) != 0)
        {
            return;
        }

        lock (_lock)
        {
            Interlocked.Exchange(ref _running, 0);
            if (Volatile.Read(ref _active) != 0)
            {
                _running = 1; // someone came in meanwhile and saw the timer running: keep it
                return;
            }

            _timer.Change(Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
            _idle?.Invoke();
        }
    }

    public void Dispose()
    {
        _disposed = true;
        _timer.DisposeAsync().AsTask().GetAwaiter().GetResult();
    }
}
