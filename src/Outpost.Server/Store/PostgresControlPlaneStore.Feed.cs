using System.Globalization;
using Npgsql;
using Outpost.Core.Store;

namespace Outpost.Server.Store;

/// <summary>
/// The change feeds. A commit that moves a revision sends a NOTIFY with the new revision (never
/// the payload: readers read the change log) in its own transaction, so PostgreSQL delivers it
/// only once the commit is visible; this replica publishes its own commits at once. Other
/// replicas' commits arrive on a connection of the store's own that only listens (a pooled
/// connection would drop its LISTEN when it went back to the pool). After every (re)connect, and
/// every <see cref="PollEvery"/> besides, the revisions are read again: a notification lost
/// while the connection was down, or never sent, delays a wake-up by at most that long.
/// </summary>
public sealed partial class PostgresControlPlaneStore
{
    private const string ChangesChannel = "outpost_changes";
    private const string BucketsChannel = "outpost_buckets";

    /// <summary>How often the listener reads the revisions whatever it heard (tests make it long, to hear notifications alone).</summary>
    internal TimeSpan PollEvery { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>The listening connection's application_name, as pg_stat_activity shows it.</summary>
    internal const string ListenerName = "outpost-listener";

    private readonly CancellationTokenSource _stopFollowing = new();
    private Task? _following;

    public ChangeFeed Changes { get; } = new();

    public ChangeFeed BucketChanges { get; } = new();

    /// <summary>How many times the listening connection was lost (and so opened again).</summary>
    internal long FollowReconnects => Interlocked.Read(ref _followReconnects);

    private long _followReconnects;

    private static async Task NotifyAsync(NpgsqlConnection connection, string channel, long revision, CancellationToken cancellationToken)
    {
        if (revision > 0)
        {
            await ExecuteAsync(connection, "SELECT pg_notify(@channel, @revision)", cancellationToken,
                ("channel", channel), ("revision", revision.ToString(CultureInfo.InvariantCulture)));
        }
    }

    /// <summary>Publishes the revisions as they stand, then keeps following them until the store is disposed.</summary>
    private async Task FollowAsync(CancellationToken cancellationToken)
    {
        await ReadRevisionsAsync(cancellationToken);
        _following ??= Task.Run(() => ListenAsync(_stopFollowing.Token), CancellationToken.None);
    }

    private async Task ReadRevisionsAsync(CancellationToken cancellationToken)
    {
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken);
        Changes.Publish(await RevisionAsync(connection, cancellationToken));
        BucketChanges.Publish(await MetaAsync(connection, "bucket_revision", cancellationToken));
    }

    private async Task ListenAsync(CancellationToken stop)
    {
        var settings = new NpgsqlConnectionStringBuilder(_dataSource.ConnectionString)
        {
            // Held for the store's life and never returned to a pool; keepalives find a dead peer.
            Pooling = false,
            KeepAlive = 15,
            ApplicationName = ListenerName,
        };
        var builder = new NpgsqlSlimDataSourceBuilder(settings.ConnectionString);
        builder.EnableTransportSecurity();
        await using var source = builder.Build();
        while (!stop.IsCancellationRequested)
        {
            try
            {
                await using var connection = await source.OpenConnectionAsync(stop);
                connection.Notification += (_, e) =>
                {
                    if (long.TryParse(e.Payload, NumberStyles.None, CultureInfo.InvariantCulture, out var revision))
                    {
                        (e.Channel == BucketsChannel ? BucketChanges : Changes).Publish(revision);
                    }
                };
                await ExecuteAsync(connection, $"LISTEN {ChangesChannel}; LISTEN {BucketsChannel}", stop);
                while (!stop.IsCancellationRequested)
                {
                    // Read on the listening connection itself: a failed read is a lost connection.
                    Changes.Publish(await RevisionAsync(connection, stop));
                    BucketChanges.Publish(await MetaAsync(connection, "bucket_revision", stop));
                    await connection.WaitAsync(PollEvery, stop);
                }
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex) when (ex is NpgsqlException or System.Net.Sockets.SocketException or TimeoutException or IOException or InvalidOperationException)
            {
                // PostgreSQL restarted, or the network between: try again shortly, and re-read on success.
                Interlocked.Increment(ref _followReconnects);
                try
                {
                    await Task.Delay(TimeSpan.FromMilliseconds(250), stop);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }
        }
    }

    private async Task StopFollowingAsync()
    {
        await _stopFollowing.CancelAsync();
        if (_following is { } following)
        {
            await following;
        }

        _stopFollowing.Dispose();
    }
}
