using System.Text;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;

namespace Outpost.Agent.Monitoring;

/// <summary>
/// The agent's log on standard output, one line per entry, in the console logger's single-line
/// form (<c>12:00:01 info: Category[id] message</c>, an exception's text on the same line).
/// The framework's console logger brings two dozen services, options monitors and formatters the
/// agent never configures, each made through reflection under NativeAOT at every start (a
/// measurable part of the release agent's time to serve); this is the part the agent uses.
/// Lines are written by one background task in the order they were logged; a logger that gets
/// ahead of a slow reader waits once 1,024 lines are queued, as the framework's does, rather than
/// dropping lines.
/// </summary>
public sealed class ConsoleLineLoggerProvider : ILoggerProvider
{
    private readonly Channel<string> _lines = Channel.CreateBounded<string>(new BoundedChannelOptions(1024) { SingleReader = true, FullMode = BoundedChannelFullMode.Wait });
    private readonly TextWriter _output;
    private readonly Task _writer;

    public ConsoleLineLoggerProvider(TextWriter? output = null)
    {
        _output = output ?? Console.Out;
        _writer = Task.Run(WriteLinesAsync);
    }

    public ILogger CreateLogger(string categoryName) => new ConsoleLineLogger(this, categoryName);

    /// <summary>Writes what is queued, then stops (waits at most 2 s for a reader that does not read).</summary>
    public void Dispose()
    {
        _lines.Writer.TryComplete();
        _writer.Wait(TimeSpan.FromSeconds(2));
    }

    private void Enqueue(string line)
    {
        if (!_lines.Writer.TryWrite(line))
        {
            // Full (the reader is behind) or completed (the agent is stopping): wait for room, or
            // write it here once the writer has gone, so that the last lines are not lost.
            try
            {
                _lines.Writer.WriteAsync(line).AsTask().GetAwaiter().GetResult();
            }
            catch (ChannelClosedException)
            {
                lock (_output)
                {
                    _output.WriteLine(line);
                    _output.Flush();
                }
            }
        }
    }

    private async Task WriteLinesAsync()
    {
        while (await _lines.Reader.WaitToReadAsync())
        {
            lock (_output)
            {
                while (_lines.Reader.TryRead(out var line))
                {
                    _output.WriteLine(line);
                }

                _output.Flush();
            }
        }
    }

    /// <summary>The console logger's short level names.</summary>
    public static string LevelName(LogLevel level) => level switch
    {
        LogLevel.Trace => "trce",
        LogLevel.Debug => "dbug",
        LogLevel.Information => "info",
        LogLevel.Warning => "warn",
        LogLevel.Error => "fail",
        _ => "crit",
    };

    /// <summary>One entry as one line: the time, the level, the category and event id, the message, the exception.</summary>
    public static string Format(DateTimeOffset time, LogLevel level, string category, EventId eventId, string message, Exception? exception)
    {
        var line = new StringBuilder(64 + category.Length + message.Length);
        line.Append(time.ToString("HH:mm:ss ", System.Globalization.CultureInfo.InvariantCulture))
            .Append(LevelName(level)).Append(": ")
            .Append(category).Append('[').Append(eventId.Id).Append("] ")
            .Append(message);
        if (exception is not null)
        {
            line.Append(' ').Append(exception);
        }

        return line.Replace("\r\n", " ").Replace('\n', ' ').ToString();
    }

    private sealed class ConsoleLineLogger(ConsoleLineLoggerProvider provider, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel != LogLevel.None;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (!IsEnabled(logLevel))
            {
                return;
            }

            ArgumentNullException.ThrowIfNull(formatter);
            var message = formatter(state, exception);
            if (message.Length == 0 && exception is null)
            {
                return;
            }

            provider.Enqueue(Format(DateTimeOffset.Now, logLevel, category, eventId, message, exception));
        }
    }
}
