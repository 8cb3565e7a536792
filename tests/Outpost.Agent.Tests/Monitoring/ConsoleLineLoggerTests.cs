using Microsoft.Extensions.Logging;
using Outpost.Agent.Monitoring;

namespace Outpost.Agent.Tests.Monitoring;

public sealed class ConsoleLineLoggerTests
{
    private static readonly Action<ILogger, int, Exception?> Line = LoggerMessage.Define<int>(LogLevel.Information, 0, "line {Number}");

    [Fact]
    public void OneEntry_IsOneLine_InTheConsoleLoggersSingleLineForm()
    {
        var time = new DateTimeOffset(2026, 12, 1, 9, 5, 7, TimeSpan.Zero);
        var line = ConsoleLineLoggerProvider.Format(time, LogLevel.Warning, "Outpost.Agent.Sync.SyncClient", new EventId(42), "Sync stream lost: refused", null);
        Assert.Equal("09:05:07 warn: Outpost.Agent.Sync.SyncClient[42] Sync stream lost: refused", line);

        var failed = ConsoleLineLoggerProvider.Format(time, LogLevel.Error, "X", new EventId(1), "first\nsecond", new InvalidOperationException("bad\r\nthing"));
        Assert.DoesNotContain('\n', failed);
        Assert.StartsWith("09:05:07 fail: X[1] first second System.InvalidOperationException: bad thing", failed, StringComparison.Ordinal);
    }

    [Fact]
    public void Lines_KeepTheirOrder_AndDisposeWritesEveryQueuedLine()
    {
        using var output = new StringWriter();
        var provider = new ConsoleLineLoggerProvider(output);
        var logger = provider.CreateLogger("Outpost.Test");
        for (var i = 0; i < 3000; i++)
        {
            Line(logger, i, null); // more than the queue holds: the logger waits, nothing is dropped
        }

        logger.Log(LogLevel.None, 0, "never written", null, (state, _) => state);
        provider.Dispose();
        logger.Log(LogLevel.Warning, 0, "after the writer stopped", null, (state, _) => state); // written in place, not lost
        var lines = output.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(3001, lines.Length);
        Assert.Equal(Enumerable.Range(0, 3000).Select(i => $"info: Outpost.Test[0] line {i}"), lines[..3000].Select(l => l[9..]));
        Assert.EndsWith("warn: Outpost.Test[0] after the writer stopped", lines[^1], StringComparison.Ordinal);
    }
}
