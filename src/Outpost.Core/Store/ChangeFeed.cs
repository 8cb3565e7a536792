namespace Outpost.Core.Store;

/// <summary>
/// A revision that only moves forward, and a wait for it to move. A store publishes to its
/// feeds after each commit that moved a revision (see <see cref="IControlPlaneStore.Changes"/>);
/// sync sessions, watches and controllers wait on them instead of polling. Built for ten
/// thousand waiters: each has a completion of its own in a list, so a waiter that gives up
/// (its session ended) leaves in constant time, where continuations on one shared task are
/// found by a linear search under that task's lock.
/// </summary>
public sealed class ChangeFeed
{
    private readonly Lock _lock = new();
    private LinkedList<Waiter> _waiters = new();
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

    /// <summary>How many waits are pending (for tests and metrics).</summary>
    public int Waiting
    {
        get
        {
            lock (_lock)
            {
                return _waiters.Count;
            }
        }
    }

    public void Publish(long revision)
    {
        LinkedList<Waiter> woken;
        lock (_lock)
        {
            if (revision <= _latest)
            {
                return;
            }

            _latest = revision;
            if (_waiters.Count == 0)
            {
                return;
            }

            woken = _waiters;
            _waiters = new LinkedList<Waiter>();
        }

        foreach (var waiter in woken)
        {
            waiter.Complete(revision);
        }
    }

    /// <summary>Completes once the revision is past <paramref name="seen"/>, returning the latest.</summary>
    public Task<long> WaitAfterAsync(long seen, CancellationToken cancellationToken)
    {
        if (cancellationToken.IsCancellationRequested)
        {
            return Task.FromCanceled<long>(cancellationToken);
        }

        Waiter waiter;
        lock (_lock)
        {
            if (_latest > seen)
            {
                return Task.FromResult(_latest);
            }

            waiter = new Waiter(this);
            waiter.Node = _waiters.AddLast(waiter);
        }

        if (cancellationToken.CanBeCanceled)
        {
            waiter.Registration = cancellationToken.UnsafeRegister(static (state, token) => ((Waiter)state!).Cancel(token), waiter);
            if (waiter.Task.IsCompleted)
            {
                waiter.Registration.Unregister(); // published before the registration was in place
            }
        }

        return waiter.Task;
    }

    private void Remove(Waiter waiter)
    {
        lock (_lock)
        {
            // Only from the list still waiting: a list a Publish took is being walked outside
            // the lock (removing from it then broke that walk), and its waiters are completed
            // there anyway; a cancelled one just stays cancelled.
            if (waiter.Node?.List is { } list && ReferenceEquals(list, _waiters))
            {
                list.Remove(waiter.Node);
            }
        }
    }

    private sealed class Waiter(ChangeFeed feed) : TaskCompletionSource<long>(TaskCreationOptions.RunContinuationsAsynchronously)
    {
        public LinkedListNode<Waiter>? Node { get; set; }

        public CancellationTokenRegistration Registration { get; set; }

        public void Complete(long revision)
        {
            Registration.Unregister();
            TrySetResult(revision);
        }

        public void Cancel(CancellationToken token)
        {
            feed.Remove(this);
            TrySetCanceled(token);
        }
    }
}
