using Outpost.Core.Api;

namespace Outpost.Server.Hosting;

/// <summary>How `outpost server` runs.</summary>
public sealed record ServerOptions
{
    /// <summary>Where the SQLite store and config.yaml live.</summary>
    public required string DataDir { get; init; }

    /// <summary>Address to listen on. Default 127.0.0.1:7440; port 0 picks a free one.</summary>
    public string Listen { get; init; } = "127.0.0.1:7440";

    /// <summary>A node whose last heartbeat is older than this is NotReady. Default 15 s.</summary>
    public TimeSpan NodeLease { get; init; } = TimeSpan.FromSeconds(15);

    /// <summary>Changes kept in the history for incremental reconnects. Default 10,000.</summary>
    public int HistoryRetention { get; init; } = 10_000;

    public TimeProvider TimeProvider { get; init; } = TimeProvider.System;

    public void Validate()
    {
        if (string.IsNullOrWhiteSpace(DataDir))
        {
            throw new ArgumentException("--data-dir is required");
        }

        ListenAddress.Parse(Listen);
        if (HistoryRetention < 1)
        {
            throw new ArgumentException("--history-retention must be at least 1");
        }

        if (NodeLease <= TimeSpan.Zero)
        {
            throw new ArgumentException("the node lease must be positive");
        }
    }
}
