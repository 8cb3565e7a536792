namespace Outpost.Wasm.Hosting;

/// <summary>
/// A periodic callback that runs only while there is work: the first <see cref="Enter"/> starts
/// it, the last <see cref="Exit"/> stops it. An idle node then has no timer waking it up (a
/// 10 ms tick costs an idle process a few percent of a core, which adds up on a small device
/// or a hundred agents on one machine).
/// </summary>
public sealed class ActivityTimer : IDisposable
{
    private readonly Lock _lock = new();
    private readonly ITimer _timer;
    private readonly TimeSpan _period;
    private readonly Action? _idle;
    private int _active;
    private volatile bool _disposed;

    /// <summary>Calls <paramref name="tick"/> every <paramref name="period"/> while in use, and <paramref name="idle"/> (under the lock) when the last user leaves.</summary>
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
            }
        }, null, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
    }

    public void Enter()
    {
        // Under a lock: an Exit to zero racing an Enter from zero must not leave the timer stopped with work running.
        lock (_lock)
        {
            if (_active++ == 0)
            {
                _timer.Change(_period, _period);
            }
        }
    }

    public void Exit()
    {
        lock (_lock)
        {
            if (--_active == 0)
            {
                _timer.Change(Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
                _idle?.Invoke();
            }
        }
    }

    /// <summary>
    /// Stops the timer and returns once no tick runs: what the tick touches (the Wasm engine) may be
    /// disposed right after. A bare Timer.Dispose does not wait, and a tick already under way then
    /// found the engine disposed and took the process down.
    /// </summary>
    public void Dispose()
    {
        _disposed = true;
        _timer.DisposeAsync().AsTask().GetAwaiter().GetResult();
    }
}
