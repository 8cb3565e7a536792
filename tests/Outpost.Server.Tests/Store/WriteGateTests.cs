using Outpost.Server.Store;

namespace Outpost.Server.Tests.Store;

/// <summary>One writer at a time, in arrival order, urgent writers first; a writer that gives up leaves the line.</summary>
public sealed class WriteGateTests
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task Writers_TakeTurns_InOrder_ButAnUrgentOneGoesFirst()
    {
        var gate = new WriteGate();
        await gate.WaitAsync();
        var order = new List<string>();
        Task Enter(string name, bool urgent = false) => (urgent ? gate.WaitUrgentAsync() : gate.WaitAsync()).ContinueWith(_ =>
        {
            lock (order)
            {
                order.Add(name);
            }

            gate.Release();
        }, TaskScheduler.Default);

        var first = Enter("first");
        var second = Enter("second");
        var lease = Enter("lease", urgent: true);
        var third = Enter("third");
        Assert.Equal(4, gate.Waiting);
        Assert.False(first.IsCompleted);

        gate.Release();
        await Task.WhenAll(first, second, lease, third).WaitAsync(Patience);
        Assert.Equal(["lease", "first", "second", "third"], order);

        // Open again: the next writer holds it at once.
        Assert.True(gate.WaitAsync().IsCompletedSuccessfully);
        gate.Release();
        Assert.Throws<InvalidOperationException>(gate.Release);
    }

    [Fact]
    public async Task AWriterThatGivesUp_LeavesTheLine_AndTheNextOneIsServed()
    {
        var gate = new WriteGate();
        await gate.WaitAsync();
        using var giveUp = new CancellationTokenSource();
        var leaving = gate.WaitAsync(giveUp.Token);
        var staying = gate.WaitAsync();

        await giveUp.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => leaving.WaitAsync(Patience));
        Assert.Equal(1, gate.Waiting);

        gate.Release();
        await staying.WaitAsync(Patience);
        Assert.Equal(0, gate.Waiting);

        // Held by the one that stayed: a canceled wait never took it, and it is still one at a time.
        var next = gate.WaitAsync();
        Assert.False(next.IsCompleted);
        gate.Release();
        await next.WaitAsync(Patience);
        gate.Release();

        // A token canceled before the wait: no place in line at all.
        Assert.True(gate.WaitAsync(giveUp.Token).IsCanceled);
        Assert.Equal(0, gate.Waiting);
    }

    [Fact]
    public async Task AClosedGate_FailsWhoeverWaits_AndLetsNobodyIn()
    {
        var gate = new WriteGate();
        await gate.WaitAsync();
        var waiting = gate.WaitAsync();

        gate.Dispose();

        await Assert.ThrowsAsync<ObjectDisposedException>(() => waiting.WaitAsync(Patience));
        await Assert.ThrowsAsync<ObjectDisposedException>(() => gate.WaitUrgentAsync());
        Assert.Equal(0, gate.Waiting);
        gate.Release(); // the writer that held it finishes quietly
    }
}
