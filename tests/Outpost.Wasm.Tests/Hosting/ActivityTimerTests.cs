using Outpost.Wasm.Hosting;

namespace Outpost.Wasm.Tests.Hosting;

public sealed class ActivityTimerTests
{
    [Fact]
    public async Task Dispose_ReturnsOnlyOnceATickUnderWay_HasFinished_AndNoTickRunsAfter()
    {
        using var started = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        var ticks = 0;
        var afterDispose = 0;
        var disposed = false;
        var timer = new ActivityTimer(TimeProvider.System, TimeSpan.FromMilliseconds(5), () =>
        {
            if (Volatile.Read(ref disposed))
            {
                Interlocked.Increment(ref afterDispose);
            }

            if (Interlocked.Increment(ref ticks) == 1)
            {
                started.Set();
                release.Wait(TimeSpan.FromSeconds(30)); // the engine is in use by this tick
            }
        });
        timer.Enter();
        Assert.True(started.Wait(TimeSpan.FromSeconds(30)), "the timer never ticked");

        var disposing = Task.Run(timer.Dispose);
        // However long it is given, Dispose cannot return while the tick runs.
        await Task.Delay(200);
        Assert.False(disposing.IsCompleted, "Dispose returned while a tick was still running");

        release.Set();
        await disposing.WaitAsync(TimeSpan.FromSeconds(30));
        Volatile.Write(ref disposed, true);
        await Task.Delay(50);
        Assert.Equal(0, Volatile.Read(ref afterDispose));
    }

    [Fact]
    public async Task Ticks_WhileInUse_StopsOnceIdle_AndStartsAgainOnTheNextEnter()
    {
        var ticks = 0;
        using var idle = new SemaphoreSlim(0);
        using var timer = new ActivityTimer(TimeProvider.System, TimeSpan.FromMilliseconds(5), () => Interlocked.Increment(ref ticks), () => idle.Release());

        timer.Enter();
        await WaitForAsync(() => Volatile.Read(ref ticks) >= 3, "ticks while in use");
        Assert.Equal(0, idle.CurrentCount); // never idle while someone is in

        timer.Exit();
        Assert.True(await idle.WaitAsync(TimeSpan.FromSeconds(30)), "the timer never noticed it was idle");
        var stoppedAt = Volatile.Read(ref ticks);
        await Task.Delay(200); // forty periods: a running timer would tick on; a tick already queued may still land
        Assert.InRange(Volatile.Read(ref ticks) - stoppedAt, 0, 2);

        timer.Enter();
        await WaitForAsync(() => Volatile.Read(ref ticks) > stoppedAt, "a tick after entering again");
        timer.Exit();
    }

    [Fact]
    public async Task ManyUsers_EnteringAndLeavingAtOnce_NeverLeaveTheTimerStopped_WhileOneIsIn()
    {
        var ticks = 0;
        using var timer = new ActivityTimer(TimeProvider.System, TimeSpan.FromMilliseconds(1), () => Interlocked.Increment(ref ticks));
        await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => Task.Run(() =>
        {
            for (var i = 0; i < 20_000; i++)
            {
                timer.Enter();
                timer.Exit();
            }
        })));

        // Whatever order those took, one more user must see ticks.
        timer.Enter();
        var before = Volatile.Read(ref ticks);
        await WaitForAsync(() => Volatile.Read(ref ticks) > before, "a tick for the last user");
        timer.Exit();
    }

    private static async Task WaitForAsync(Func<bool> condition, string what)
    {
        var until = DateTime.UtcNow.AddSeconds(30);
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < until, $"timed out waiting for {what}");
            await Task.Delay(5);
        }
    }
}
