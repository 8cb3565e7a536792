namespace Outpost.Agent.Apps;

/// <summary>
/// At most <c>limit</c> requests of one app run at once, and at most <c>queue</c> more wait
/// (each no longer than its timeout). Everything beyond is turned away at once, so a slow
/// or hostile app never builds an unbounded backlog.
/// </summary>
public sealed class ConcurrencyGate(int limit, int queue) : IDisposable
{
    private readonly SemaphoreSlim _slots = new(limit, limit);
    private int _waiting;

    public int Limit { get; } = limit;

    /// <summary>True when the caller may run (and must call <see cref="Exit"/>); false when it should get 503.</summary>
    public async ValueTask<bool> EnterAsync(TimeSpan maxWait, CancellationToken cancellationToken)
    {
        if (_slots.Wait(0, CancellationToken.None))
        {
            return true;
        }

        if (Interlocked.Increment(ref _waiting) > queue)
        {
            Interlocked.Decrement(ref _waiting);
            return false;
        }

        try
        {
            return await _slots.WaitAsync(maxWait, cancellationToken);
        }
        finally
        {
            Interlocked.Decrement(ref _waiting);
        }
    }

    public void Exit() => _slots.Release();

    public void Dispose() => _slots.Dispose();
}
