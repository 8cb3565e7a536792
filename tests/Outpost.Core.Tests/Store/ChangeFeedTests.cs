using Outpost.Core.Store;

namespace Outpost.Core.Tests.Store;

public sealed class ChangeFeedTests
{
    [Fact]
    public async Task AWait_CompletesWhenTheRevisionPassesIt_WithTheLatest_AndAtOnceWhenItAlreadyHas()
    {
        var feed = new ChangeFeed();
        feed.Publish(3);
        Assert.Equal(3, await feed.WaitAfterAsync(2, CancellationToken.None));

        var waiting = feed.WaitAfterAsync(3, CancellationToken.None);
        feed.Publish(3); // not past it
        feed.Publish(1); // backwards: ignored
        Assert.False(waiting.IsCompleted);
        feed.Publish(5);
        Assert.Equal(5, await waiting.WaitAsync(TimeSpan.FromSeconds(30)));
        Assert.Equal(5, feed.Latest);
    }

    [Fact]
    public async Task WaitsThatGiveUp_LeaveTheFeed_SoTenThousandSessionsComingAndGoingLeaveNothingBehind()
    {
        var feed = new ChangeFeed();
        var sessions = Enumerable.Range(0, 10_000).Select(_ => new CancellationTokenSource()).ToList();
        var waits = sessions.Select(s => feed.WaitAfterAsync(0, s.Token)).ToList();
        Assert.Equal(10_000, feed.Waiting);

        // Half the sessions end (a mass disconnect); the rest wake on the next change.
        foreach (var session in sessions.Take(5_000))
        {
            await session.CancelAsync();
        }

        Assert.Equal(5_000, feed.Waiting);
        Assert.All(waits.Take(5_000), w => Assert.True(w.IsCanceled));
        feed.Publish(1);
        Assert.Equal(0, feed.Waiting);
        Assert.All(await Task.WhenAll(waits.Skip(5_000)), r => Assert.Equal(1, r));

        // A wait that lost a race (another feed moved first) leaves when its session's token is cancelled.
        using var loser = new CancellationTokenSource();
        var lost = feed.WaitAfterAsync(1, loser.Token);
        Assert.Equal(1, feed.Waiting);
        await loser.CancelAsync();
        Assert.Equal(0, feed.Waiting);
        Assert.True(lost.IsCanceled);
        sessions.ForEach(s => s.Dispose());
    }

    [Fact]
    public async Task SessionsEndingWhileAPublishWakesTheRest_NeitherFailsThePublishNorLoseAWake()
    {
        // A Publish wakes the list it took outside its lock; a session ending at that moment once
        // removed itself from that same list, and the Publish failed (the collection changed under it).
        var feed = new ChangeFeed();
        for (var round = 1; round <= 20; round++)
        {
            var sessions = Enumerable.Range(0, 5_000).Select(_ => new CancellationTokenSource()).ToList();
            var waits = sessions.Select(s => feed.WaitAfterAsync(round - 1, s.Token)).ToList();
            using var go = new Barrier(2);
            var ending = Task.Factory.StartNew(() =>
            {
                go.SignalAndWait();
                for (var i = sessions.Count - 1; i >= 0; i--)
                {
                    sessions[i].Cancel(); // from the end: the part of the list a publish reaches last
                }
            }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
            var publishing = Task.Factory.StartNew(() =>
            {
                go.SignalAndWait();
                feed.Publish(round);
            }, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
            await Task.WhenAll(ending, publishing); // a publish that threw fails here

            // Every wait ended, woken or cancelled; none is left behind.
            await Task.WhenAll(waits.Select(w => w.ContinueWith(_ => { }, TaskScheduler.Default)));
            Assert.All(waits, w => Assert.True(w.IsCompletedSuccessfully ? w.Result == round : w.IsCanceled));
            Assert.Equal(0, feed.Waiting);
            sessions.ForEach(s => s.Dispose());
        }
    }
}
