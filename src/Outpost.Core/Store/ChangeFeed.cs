namespace Outpost.Core.Store;

/// <summary>
/// A revision that only moves forward, and a wait for it to move. A store publishes to its
/// feeds after each commit that moved a revision (see <see cref="IControlPlaneStore.Changes"/>);
/// sync sessions, watches and controllers wait on them instead of polling.
/// </summary>
public sealed class ChangeFeed
{
    private readonly Lock _lock = new();
    private TaskCompletionSource _next = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private long _latest;

    public long Latest
    {
        get
        {
            lock (_lock)
            {
                return _latest;
            }
        }
    }

    public void Publish(long revision)
    {
        TaskCompletionSource toSignal;
        lock (_lock)
        {
            if (revision <= _latest)
            {
                return;
            }

            _latest = revision;
            toSignal = _next;
            _next = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        }

        toSignal.TrySetResult();
    }

    /// <summary>Completes once the revision is past <paramref name="seen"/>, returning the latest.</summary>
    public async Task<long> WaitAfterAsync(long seen, CancellationToken cancellationToken)
    {
        while (true)
        {
            Task wait;
            lock (_lock)
            {
                if (_latest > seen)
                {
                    return _latest;
                }

                wait = _next.Task;
            }

            await wait.WaitAsync(cancellationToken);
        }
    }
}
