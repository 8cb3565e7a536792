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
}
