using Microsoft.Extensions.Logging;

namespace Outpost.Agent.Monitoring;

/// <summary>
/// Sends the agent's own log lines (Information and above) to the node's log ring, so
/// `outpost logs node/NAME` shows what the agent did. App lines already go there directly,
/// so the host function's category is left out here.
/// </summary>
/// <remarks>The ring is asked for at the first line written: the agent's loggers exist before its log store has opened.</remarks>
public sealed class RingLoggerProvider(Func<LogRing> ring) : ILoggerProvider
{
    private const string AppLogCategory = "Outpost.Agent.Host.AgentHostServices";

    public ILogger CreateLogger(string categoryName) => new RingLogger(ring, categoryName);

    public void Dispose()
    {
    }

    private sealed class RingLogger(Func<LogRing> ring, string category) : ILogger
    {
        private readonly string _source = category[(category.LastIndexOf('.') + 1)..];

        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Information && logLevel != LogLevel.None && category != AppLogCategory;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (!IsEnabled(logLevel))
            {
                return;
            }

            ArgumentNullException.ThrowIfNull(formatter);
            var message = formatter(state, exception);
            if (exception is not null)
            {
                message += $" ({exception.GetType().Name}: {exception.Message})";
            }

            ring().Write(LevelName(logLevel), "", 0, $"{_source}: {message}");
        }
    }

    public static string LevelName(LogLevel level) => level switch
    {
        <= LogLevel.Debug => "debug",
        LogLevel.Information => "info",
        LogLevel.Warning => "warn",
        _ => "error",
    };
}
