using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using Outpost.Core.Store;
using Outpost.Server.Hosting;
using Outpost.Server.Store;

namespace Outpost.Server.Tests.Hosting;

/// <summary>Two replicas on one store: one leads, work runs only there, and a dead leader's place is taken under a new epoch.</summary>
public sealed class LeadershipTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("outpost-leader-").FullName;
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 11, 30, 12, 0, 0, TimeSpan.Zero));

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static async Task Until(Func<bool> condition, string what)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, $"timed out waiting for {what}");
            await Task.Delay(20);
        }
    }

    /// <summary>Moves the fake clock one renewal at a time, so each replica's loop takes its turn, until the condition holds.</summary>
    private async Task AdvanceUntil(Func<bool> condition, string what)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, $"timed out waiting for {what}");
            _time.Advance(Leadership.RenewEvery);
            await Task.Delay(50);
        }
    }

    [Fact]
    public async Task OneReplicaLeads_WorkRunsThereOnly_AndADeadLeadersPlaceIsTakenUnderANewEpoch_WhoseFenceRefusesTheOld()
    {
        var path = Path.Combine(_dir, "outpost.db");
        await using var storeA = new SqliteControlPlaneStore(path, _time);
        await using var storeB = new SqliteControlPlaneStore(path, _time);
        await storeA.InitializeAsync(CancellationToken.None);
        await storeB.InitializeAsync(CancellationToken.None);
        var a = new Leadership(storeA, _time, NullLogger<Leadership>.Instance);
        var b = new Leadership(storeB, _time, NullLogger<Leadership>.Instance);
        var runs = new List<string>();
        using var stopA = new CancellationTokenSource();
        using var stopB = new CancellationTokenSource();

        Task Work(string who, CancellationToken ct)
        {
            lock (runs)
            {
                runs.Add(who);
            }

            return Task.Delay(Timeout.Infinite, ct);
        }

        await a.StartAsync(CancellationToken.None);
        await Until(() => a.IsLeader, "replica A to lead");
        await b.StartAsync(CancellationToken.None);
        var workA = a.RunWhileLeaderAsync(ct => Work("a", ct), stopA.Token);
        var workB = b.RunWhileLeaderAsync(ct => Work("b", ct), stopB.Token);
        await Until(() => runs.Contains("a"), "work to start on A");

        // B asks and is refused: A's lease is fresh.
        await Until(() => b.Attempts >= 1, "replica B to ask");
        Assert.False(b.IsLeader);
        Assert.Equal(["a"], runs);
        var oldFence = a.Fence!;

        // A dies without a word (its loop stops; the lease is not released): B takes over once the lease runs out.
        await stopA.CancelAsync();
        await StopSilentlyAsync(a);
        await AdvanceUntil(() => b.IsLeader, "replica B to take over");
        await Until(() => runs.Contains("b"), "work to start on B");
        Assert.Equal(oldFence.Epoch + 1, b.Fence!.Epoch);

        // The deposed leader's late write is refused by its epoch.
        await storeB.WriteAsync([new ResourceWrite { Op = WriteOp.Create, Kind = "Application", Name = "app" }], CancellationToken.None);
        var state = new Outpost.Core.Rollouts.RolloutState { Revision = 1, StartedAt = _time.GetUtcNow(), Moved = ["edge-1"] };
        await Assert.ThrowsAsync<StoreException>(() => storeA.SaveRolloutAsync("app", state, movesNodes: true, oldFence, CancellationToken.None));
        await storeB.SaveRolloutAsync("app", state, movesNodes: true, b.Fence, CancellationToken.None);

        // A clean stop hands over at once: a third replica needs no lease's wait.
        var c = new Leadership(storeA, _time, NullLogger<Leadership>.Instance);
        await c.StartAsync(CancellationToken.None);
        await b.StopAsync(CancellationToken.None);
        await stopB.CancelAsync();
        await workB;
        await workA;
        await AdvanceUntil(() => c.IsLeader, "replica C to lead after B stopped cleanly");
        Assert.True(c.Fence!.Epoch > oldFence.Epoch + 1);
        await c.StopAsync(CancellationToken.None);
    }

    /// <summary>Stops a replica's renewals as a crash would: no release of the lease.</summary>
    private static async Task StopSilentlyAsync(Leadership leadership)
    {
        // BackgroundService.StopAsync cancels the loop; the override then releases. Dispose cancels without it.
        leadership.Dispose();
        try
        {
            await leadership.ExecuteTask!;
        }
        catch (OperationCanceledException)
        {
        }
    }
}
