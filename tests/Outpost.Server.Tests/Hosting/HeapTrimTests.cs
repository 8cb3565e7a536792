using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Time.Testing;
using Outpost.Server.Hosting;
using Outpost.Server.Sync;

namespace Outpost.Server.Tests.Hosting;

/// <summary>The server trims the C heap once node streams stop opening and closing, and not otherwise.</summary>
public sealed class HeapTrimTests
{
    private static readonly TimeSpan Step = TimeSpan.FromSeconds(1);

    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 12, 3, 12, 0, 0, TimeSpan.Zero));

    /// <summary>Advances the clock a second at a time, letting the trim loop run between steps.</summary>
    private async Task AdvanceAsync(TimeSpan span)
    {
        for (var advanced = TimeSpan.Zero; advanced < span; advanced += Step)
        {
            await Task.Delay(20);
            _time.Advance(Step);
        }
    }

    /// <summary>Advances the clock a second at a time until <paramref name="done"/>; returns the time advanced.</summary>
    private async Task<TimeSpan> AdvanceUntilAsync(Func<bool> done, TimeSpan limit)
    {
        var advanced = TimeSpan.Zero;
        while (advanced < limit)
        {
            // The trim runs on the timer's thread just after the step that fired it: give it a moment to show.
            for (var i = 0; i < 2 && !done(); i++)
            {
                await Task.Delay(10);
            }

            if (done())
            {
                return advanced;
            }

            _time.Advance(Step);
            advanced += Step;
        }

        for (var i = 0; i < 500 && !done(); i++)
        {
            await Task.Delay(20);
        }

        return advanced;
    }

    [Fact]
    public async Task TrimsOnlyAfterStreamsHaveSettled()
    {
        var leases = new NodeLeases(_time);
        using var trim = new HeapTrim(leases, _time, NullLogger<HeapTrim>.Instance);
        await trim.StartAsync(CancellationToken.None);
        try
        {
            // No stream opened or closed: nothing to give back, however long.
            await AdvanceAsync(TimeSpan.FromMinutes(1));
            Assert.Equal(0, trim.Trims);

            // A node connects; another does 20 s later, before the first settled: the trim waits for a quiet Settle after the last.
            var session = leases.Connect("edge-1");
            await AdvanceAsync(TimeSpan.FromSeconds(20));
            Assert.Equal(0, trim.Trims);
            leases.Connect("edge-2");
            var fullBefore = GC.GetGCMemoryInfo(GCKind.FullBlocking).Index;
            var afterLast = await AdvanceUntilAsync(() => trim.Trims > 0, TimeSpan.FromMinutes(2));
            Assert.Equal(1, trim.Trims);
            // The managed heap went first: a full, blocking collection since the settle.
            var full = GC.GetGCMemoryInfo(GCKind.FullBlocking);
            Assert.True(full.Index > fullBefore, $"no full blocking collection since the settle (last: #{full.Index}, before: #{fullBefore})");
            Assert.True(afterLast >= HeapTrim.Settle, $"trimmed {afterLast} after the last stream change, before the {HeapTrim.Settle} settle");

            // Quiet again: no further trim. A stream closing is a change: one more.
            await AdvanceAsync(TimeSpan.FromMinutes(1));
            Assert.Equal(1, trim.Trims);
            leases.Disconnect("edge-1", session);
            await AdvanceUntilAsync(() => trim.Trims > 1, TimeSpan.FromMinutes(2));
            Assert.Equal(2, trim.Trims);
        }
        finally
        {
            await trim.StopAsync(CancellationToken.None);
        }
    }
}
