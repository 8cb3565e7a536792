using Outpost.Server.Store;

namespace Outpost.Server.Tests.Store;

public sealed class GroupCommitTests
{
    [Fact]
    public async Task ItemsQueuedWhileABatchIsWritten_ShareTheNextBatch()
    {
        var firstStarted = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var releaseFirst = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var batches = new List<int[]>();
        var commit = new GroupCommit<int>(async items =>
        {
            lock (batches)
            {
                batches.Add([.. items]);
            }

            if (items.Contains(0))
            {
                firstStarted.TrySetResult();
                await releaseFirst.Task;
            }
        }, maxBatch: 100);

        var first = commit.AddAsync(0, CancellationToken.None);
        await firstStarted.Task;
        // The writer is inside the first batch's write: these ten wait for it, then go together.
        var rest = Enumerable.Range(1, 10).Select(i => commit.AddAsync(i, CancellationToken.None)).ToList();
        Assert.All(rest, t => Assert.False(t.IsCompleted));
        releaseFirst.SetResult();
        await first;
        await Task.WhenAll(rest);

        Assert.Equal([[0], [.. Enumerable.Range(1, 10)]], batches);
    }

    [Fact]
    public async Task AnItemTheWriteRefuses_FailsItsOwnWaiter_AndTheRestOfItsBatchIsWritten()
    {
        var firstStarted = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var releaseFirst = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var written = new List<int>();
        var commit = new GroupCommit<int>(async items =>
        {
            if (items.Contains(0))
            {
                firstStarted.TrySetResult();
                await releaseFirst.Task;
            }

            if (items.Contains(7))
            {
                throw new InvalidDataException("item 7 is refused");
            }

            lock (written)
            {
                written.AddRange(items);
            }
        }, maxBatch: 100);

        var first = commit.AddAsync(0, CancellationToken.None);
        await firstStarted.Task;
        var rest = Enumerable.Range(1, 10).ToDictionary(i => i, i => commit.AddAsync(i, CancellationToken.None));
        releaseFirst.SetResult();
        await first;

        var refused = await Assert.ThrowsAsync<InvalidDataException>(() => rest[7]);
        Assert.Equal("item 7 is refused", refused.Message);
        await Task.WhenAll(rest.Where(r => r.Key != 7).Select(r => r.Value));
        Assert.Equal([0, 1, 2, 3, 4, 5, 6, 8, 9, 10], written.Order());
    }

    [Fact]
    public async Task AWaiterThatGivesUp_LeavesItsItemToBeWritten()
    {
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var written = new List<int>();
        var commit = new GroupCommit<int>(async items =>
        {
            await release.Task;
            lock (written)
            {
                written.AddRange(items);
            }
        }, maxBatch: 100);
        using var cts = new CancellationTokenSource();

        var waiting = commit.AddAsync(1, cts.Token);
        await cts.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => waiting);
        release.SetResult();
        await commit.Drained;

        Assert.Equal([1], written);
    }
}
