using Outpost.Core.Api;

namespace Outpost.Server.Hosting;

/// <summary>How `outpost server` runs.</summary>
public sealed record ServerOptions
{
    /// <summary>Where the SQLite store and config.yaml live.</summary>
    public required string DataDir { get; init; }

    /// <summary>Address to listen on. Default 127.0.0.1:7440; port 0 picks a free one.</summary>
    public string Listen { get; init; } = "127.0.0.1:7440";

    /// <summary>A node whose last heartbeat is older than this is NotReady. Default 30 s: three missed beats at the agent's default 10 s.</summary>
    public TimeSpan NodeLease { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Changes kept in the history for incremental reconnects. Default 10,000.</summary>
    public int HistoryRetention { get; init; } = 10_000;

    public TimeProvider TimeProvider { get; init; } = TimeProvider.System;

    /// <summary>Revisions kept per Application for history and undo. Default 10.</summary>
    public int RevisionHistory { get; init; } = 10;

    /// <summary>How long a node certificate is valid; agents renew with a third of it left. Default 30 days.</summary>
    public TimeSpan NodeCertificateLifetime { get; init; } = TimeSpan.FromDays(30);

    /// <summary>How long app and node metrics are kept, at one-minute resolution. Default 24 h.</summary>
    public TimeSpan MetricsRetention { get; init; } = TimeSpan.FromHours(24);

    /// <summary>How long shipped logs are kept. Default 7 days.</summary>
    public TimeSpan LogRetention { get; init; } = TimeSpan.FromDays(7);

    /// <summary>How often alert rules are evaluated. Default 10 s.</summary>
    public TimeSpan AlertInterval { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// Where public ingress is served (HOST:PORT, plain HTTP/1.1, no token): services whose apps
    /// set spec.expose.ingress, forwarded to a healthy endpoint. Null: no ingress listener.
    /// </summary>
    public string? Ingress { get; init; }

    /// <summary>
    /// A PostgreSQL database for the store (postgres://USER:PASSWORD@HOST:PORT/DB, or an Npgsql
    /// connection string) instead of SQLite in the data dir. The fleet CA and the secrets key are
    /// kept in it too, sealed with the server token (<see cref="ServerTokenFile"/>), so every
    /// server on the database holds the same ones. One server per database for now.
    /// </summary>
    public string? Datastore { get; init; }

    /// <summary>
    /// The file holding the server token that seals what servers on one datastore share; by
    /// default DATA/server-token, made on first start. Every server on a datastore needs the
    /// first one's token.
    /// </summary>
    public string? ServerTokenFile { get; init; }

    /// <summary>Serve cleartext HTTP/2 instead of TLS. Only for a lab behind something that encrypts.</summary>
    public bool InsecureHttp { get; init; }

    /// <summary>A serving certificate to use instead of one from the server's own CA (PEM, may include its chain).</summary>
    public string? TlsCertFile { get; init; }

    /// <summary>The key of <see cref="TlsCertFile"/> (PEM).</summary>
    public string? TlsKeyFile { get; init; }

    public void Validate()
    {
        if (string.IsNullOrWhiteSpace(DataDir))
        {
            throw new ArgumentException("--data-dir is required");
        }

        ListenAddress.Parse(Listen);
        if (Ingress is not null)
        {
            ListenAddress.Parse(Ingress);
        }

        if (RevisionHistory < 1)
        {
            throw new ArgumentException("--revision-history must be at least 1");
        }

        if (HistoryRetention < 1)
        {
            throw new ArgumentException("--history-retention must be at least 1");
        }

        if ((TlsCertFile is null) != (TlsKeyFile is null))
        {
            throw new ArgumentException("--tls-cert and --tls-key go together");
        }

        if (InsecureHttp && TlsCertFile is not null)
        {
            throw new ArgumentException("--insecure-http and --tls-cert exclude each other");
        }

        foreach (var file in new[] { TlsCertFile, TlsKeyFile }.OfType<string>())
        {
            if (!File.Exists(file))
            {
                throw new ArgumentException($"TLS file '{file}' does not exist");
            }
        }

        if (NodeLease <= TimeSpan.Zero)
        {
            throw new ArgumentException("the node lease must be positive");
        }

        if (MetricsRetention < TimeSpan.FromMinutes(1) || LogRetention < TimeSpan.FromMinutes(1))
        {
            throw new ArgumentException("--metrics-retention and --log-retention must be at least 1m");
        }

        if (AlertInterval <= TimeSpan.Zero)
        {
            throw new ArgumentException("--alert-interval must be positive");
        }
    }
}
