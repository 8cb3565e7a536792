namespace Outpost.Server.Store;

/// <summary>
/// One writer at a time, first come first served, except that an urgent writer goes ahead of
/// every ordinary one waiting. The SQLite store's writers take it: in a reconnect storm thousands
/// of node status writes queue for seconds, and the controllers' lease renewal, behind them,
/// failed and the server stepped down (measured at 10,000 nodes), though with one server
/// there is nobody to hand over to.
/// </summary>
internal sealed class WriteGate : IDisposable
{
    private readonly Lock _lock = new();
    private readonly LinkedList<Waiter> _urgent = new();
    private readonly LinkedList<Waiter> _ordinary = new();
    private bool _held;
    private bool _closed;

    /// <summary>
    /// Closes the gate with its store: a writer still waiting, or coming later (a background loop
    /// outliving the server), fails with <see cref="ObjectDisposedException"/> instead of opening
    /// the database again.
    /// </summary>
    public void Dispose()
    {
        List<Waiter> waiting;
        lock (_lock)
        {
            _closed = true;
            waiting = [.. _urgent, .. _ordinary];
            _urgent.Clear();
            _ordinary.Clear();
            foreach (var waiter in waiting)
            {
                waiter.Node = null;
            }
        }

        foreach (var waiter in waiting)
        {
            waiter.Registration.Unregister();
            waiter.TrySetException(new ObjectDisposedException(nameof(WriteGate)));
        }
    }

    /// <summary>Writers waiting now (tests).</summary>
    internal int Waiting
    {
        get
        {
            lock (_lock)
            {
                return _urgent.Count + _ordinary.Count;
            }
        }
    }

    /// <summary>Completes once the caller holds the gate; <see cref="Release"/> it after.</summary>
    public Task WaitAsync(CancellationToken cancellationToken = default) => EnterAsync(urgent: false, cancellationToken);

    /// <summary>As <see cref="WaitAsync"/>, ahead of every ordinary writer waiting.</summary>
    public Task WaitUrgentAsync(CancellationToken cancellationToken = default) => EnterAsync(urgent: true, cancellationToken);

    private Task EnterAsync(bool urgent, CancellationToken cancellationToken)
    {
        if (cancellationToken.IsCancellationRequested)
        {
            return Task.FromCanceled(cancellationToken);
        }

        Waiter waiter;
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_closed, this);
            if (!_held)
            {
                _held = true;
                return Task.CompletedTask;
            }

            waiter = new Waiter(this);
            waiter.Node = (urgent ? _urgent : _ordinary).AddLast(waiter);
        }

        if (cancellationToken.CanBeCanceled)
        {
            waiter.Registration = cancellationToken.UnsafeRegister(static (state, token) => ((Waiter)state!).Cancel(token), waiter);
            if (waiter.Task.IsCompleted)
            {
                waiter.Registration.Unregister();
            }
        }

        return waiter.Task;
    }

    /// <summary>Hands the gate to the next urgent writer, else the next ordinary one, else opens it.</summary>
    public void Release()
    {
        Waiter? next;
        lock (_lock)
        {
            if (_closed)
            {
                return; // the store is gone: nobody to hand over to
            }

            if (!_held)
            {
                throw new InvalidOperationException("the write gate is not held");
            }

            var queue = _urgent.Count > 0 ? _urgent : _ordinary;
            if (queue.First is not { } first)
            {
                _held = false;
                return;
            }

            next = first.Value;
            queue.RemoveFirst();
            next.Node = null;
        }

        next.Registration.Unregister();
        next.TrySetResult();
    }

    private sealed class Waiter(WriteGate gate) : TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)
    {
        public LinkedListNode<Waiter>? Node { get; set; }

        public CancellationTokenRegistration Registration { get; set; }

        /// <summary>Leaves the queue, unless the gate was handed to it first (then the caller holds it).</summary>
        public void Cancel(CancellationToken token)
        {
            lock (gate._lock)
            {
                if (Node is not { } node)
                {
                    return;
                }

                node.List!.Remove(node);
                Node = null;
            }

            TrySetCanceled(token);
        }
    }
}
