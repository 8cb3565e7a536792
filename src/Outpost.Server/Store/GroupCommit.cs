namespace Outpost.Server.Store;

/// <summary>
/// Group commit: each item is durable when its task completes, but the items that arrive while
/// one batch is being written share the next batch, so many small writes (the proxy's audited
/// requests) cost one commit per batch rather than one each. One writer runs at a time, only
/// while there is something to write. When a batch of several fails, each of its items is written
/// again on its own, so one item the store refuses fails its own waiter, not its neighbours'.
/// </summary>
internal sealed class GroupCommit<T>(Func<IReadOnlyList<T>, Task> write, int maxBatch)
{
    private readonly System.Collections.Concurrent.ConcurrentQueue<(T Item, TaskCompletionSource Written)> _queue = new();
    private int _writing;
    private Task _writer = Task.CompletedTask;

    // The batch being written, kept from one writer to the next (one writer at a time, see
    // _writing): a batch sized for the most a commit takes, made per write, was 8 KB for every
    // proxied request that came alone.
    private readonly List<(T Item, TaskCompletionSource Written)> _batch = [];

    /// <summary>Completes once everything queued so far is written (or failed): for a store's disposal.</summary>
    public Task Drained => Volatile.Read(ref _writer);

    public Task AddAsync(T item, CancellationToken cancellationToken)
    {
        var written = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _queue.Enqueue((item, written));
        if (Interlocked.CompareExchange(ref _writing, 1, 0) == 0)
        {
            // No writer: this caller writes the first batch itself (no hand-off to another thread
            // when writes do not overlap); what queues meanwhile is written from the thread pool.
            Volatile.Write(ref _writer, WriteAllAsync());
        }

        return written.Task.WaitAsync(cancellationToken);
    }

    /// <summary>Writes a batch at a time until the queue is empty: the first on the caller's thread, the rest on the pool's.</summary>
    private async Task WriteAllAsync()
    {
        var batch = _batch;
        var onPool = false;
        for (var first = true; ; first = false)
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

            if (!first && !onPool)
            {
                await Task.Yield(); // the caller that started this writer has its own item written: let it go
                onPool = true;
            }

            if (!await TryWriteAsync(batch) && batch.Count > 1)
            {
                foreach (var one in batch)
                {
                    await TryWriteAsync([one]);
                }
            }

            batch.Clear();
        }
    }

    /// <summary>
    /// Writes <paramref name="batch"/> in one go: true, with each waiter told, when it was written;
    /// false when it failed (a single item's waiter is told why; a larger batch is left to retry).
    /// </summary>
    private async Task<bool> TryWriteAsync(List<(T Item, TaskCompletionSource Written)> batch)
    {
        try
        {
            await write([.. batch.Select(b => b.Item)]);
        }
#pragma warning disable CA1031 // whatever failed, each waiter learns it and the writer goes on: none may wait forever
        catch (Exception ex)
#pragma warning restore CA1031
        {
            if (batch.Count == 1)
            {
                batch[0].Written.TrySetException(ex);
            }

            return false;
        }

        foreach (var (_, written) in batch)
        {
            written.TrySetResult();
        }

        return true;
    }
}
