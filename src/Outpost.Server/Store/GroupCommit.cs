namespace Outpost.Server.Store;

/// <summary>
/// Group commit: each item is durable when its task completes, but the items that arrive while
/// one batch is being written share the next batch, so many small writes (the proxy's audited
/// requests) cost one commit per batch rather than one each. One writer runs at a time, only
/// while there is something to write; whatever fails a batch is each of its waiters' to see.
/// </summary>
internal sealed class GroupCommit<T>(Func<IReadOnlyList<T>, Task> write, int maxBatch)
{
    private readonly System.Collections.Concurrent.ConcurrentQueue<(T Item, TaskCompletionSource Written)> _queue = new();
    private int _writing;
    private Task _writer = Task.CompletedTask;

    /// <summary>Completes once everything queued so far is written (or failed): for a store's disposal.</summary>
    public Task Drained => Volatile.Read(ref _writer);

    public Task AddAsync(T item, CancellationToken cancellationToken)
    {
        var written = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _queue.Enqueue((item, written));
        if (Interlocked.CompareExchange(ref _writing, 1, 0) == 0)
        {
            Volatile.Write(ref _writer, Task.Run(WriteAllAsync, CancellationToken.None));
        }

        return written.Task.WaitAsync(cancellationToken);
    }

    /// <summary>Writes a batch at a time until the queue is empty.</summary>
    private async Task WriteAllAsync()
    {
        var batch = new List<(T Item, TaskCompletionSource Written)>(maxBatch);
        while (true)
        {
            while (batch.Count < maxBatch && _queue.TryDequeue(out var queued))
            {
                batch.Add(queued);
            }

            if (batch.Count == 0)
            {
                Volatile.Write(ref _writing, 0);
                // An item queued after the last look but before the flag dropped: this writer goes on.
                if (_queue.IsEmpty || Interlocked.CompareExchange(ref _writing, 1, 0) != 0)
                {
                    return;
                }

                continue;
            }

            try
            {
                await write([.. batch.Select(b => b.Item)]);
                foreach (var (_, written) in batch)
                {
                    written.TrySetResult();
                }
            }
#pragma warning disable CA1031 // whatever failed, each waiter learns it and the writer goes on: none may wait forever
            catch (Exception ex)
#pragma warning restore CA1031
            {
                foreach (var (_, written) in batch)
                {
                    written.TrySetException(ex);
                }
            }

            batch.Clear();
        }
    }
}
