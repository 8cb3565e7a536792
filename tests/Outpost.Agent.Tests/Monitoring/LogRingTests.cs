using Outpost.Agent.Monitoring;

namespace Outpost.Agent.Tests.Monitoring;

public sealed class LogRingTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("outpost-logring-").FullName;

    [Fact]
    public async Task PastTheQuota_TheOldestLinesGo_AndAreCounted_AcrossARestart()
    {
        var path = Path.Combine(_dir, "logs.db");
        string stream;
        using (var ring = new LogRing(path, quotaBytes: 2048))
        {
            stream = ring.Stream;
            for (var i = 1; i <= 100; i++)
            {
                ring.Write("info", "hello", 3, $"line {i:000}");
            }

            await ring.FlushAsync(CancellationToken.None);
            var kept = ring.Read(0, 1000, long.MaxValue);
            Assert.True(ring.Stats.PendingBytes <= 2048, $"{ring.Stats.PendingBytes} bytes kept");
            Assert.Equal(100 - kept.Count, ring.Stats.DroppedTotal);
            Assert.Equal("line 100", kept[^1].Message);
            Assert.Equal(Enumerable.Range(101 - kept.Count, kept.Count).Select(i => $"line {i:000}"), kept.Select(l => l.Message));
            Assert.All(kept, l => Assert.Equal(("info", "hello", 3L), (l.Level, l.App, l.Revision)));

            ring.DeleteThrough(kept[9].Sequence);
            Assert.Equal(kept.Count - 10, ring.Stats.PendingEntries);
        }

        using var reopened = new LogRing(path, quotaBytes: 2048);
        Assert.Equal(stream, reopened.Stream); // the same stream: the server keeps deduplicating
        Assert.True(reopened.Stats.DroppedTotal > 0);
        var rest = reopened.Read(0, 1000, long.MaxValue);
        Assert.Equal("line 100", rest[^1].Message);
        reopened.Write("warn", "", 0, "after restart");
        await reopened.FlushAsync(CancellationToken.None);
        Assert.True(reopened.Read(rest[^1].Sequence, 10, long.MaxValue).Single().Sequence > rest[^1].Sequence, "sequence numbers keep growing");
    }

    [Fact]
    public async Task ALongLine_IsCut_AndAReadStopsAtItsByteBudget()
    {
        using var ring = new LogRing(Path.Combine(_dir, "logs.db"));
        ring.Write("error", "hello", 1, new string('é', 10_000));
        ring.Write("info", "hello", 1, "short");
        await ring.FlushAsync(CancellationToken.None);

        var first = ring.Read(0, 10, maxBytes: 100); // always at least one line
        var line = Assert.Single(first);
        Assert.EndsWith(" [cut at 8 KiB]", line.Message, StringComparison.Ordinal);
        Assert.True(System.Text.Encoding.UTF8.GetByteCount(line.Message) <= LogRing.MaxMessageBytes);
        Assert.Equal(2, ring.Read(0, 10, long.MaxValue).Count);
    }

    public void Dispose()
    {
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        Directory.Delete(_dir, recursive: true);
    }
}
