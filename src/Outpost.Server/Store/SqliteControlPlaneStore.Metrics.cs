using System.Globalization;
using System.Text.Json;
using Outpost.Core.Metrics;
using Outpost.Core.Resources;

namespace Outpost.Server.Store;

/// <summary>App and node metrics at one-minute resolution.</summary>
public sealed partial class SqliteControlPlaneStore
{
    public async Task SaveMetricMinutesAsync(IReadOnlyCollection<AppMinute> apps, IReadOnlyCollection<NodeMinute> nodes, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(apps);
        ArgumentNullException.ThrowIfNull(nodes);
        if (apps.Count == 0 && nodes.Count == 0)
        {
            return;
        }

        await _writeLock.WaitAsync(cancellationToken);
        try
        {
            await using var connection = await OpenAsync(cancellationToken);
            await using var transaction = connection.BeginTransaction(deferred: false);
            foreach (var m in apps)
            {
                await ExecuteAsync(connection, transaction, """
                    INSERT OR REPLACE INTO app_minutes (app, revision, node, minute_ms, requests, client_errors, server_errors, timeouts, limit_hits, latency_sum, buckets, memory_peak)
                    VALUES ($app, $rev, $node, $minute, $requests, $client, $server, $timeouts, $limits, $sum, $buckets, $memory)
                    """, cancellationToken,
                    ("$app", m.App), ("$rev", m.Revision), ("$node", m.Node), ("$minute", m.Minute.ToUnixTimeMilliseconds()), ("$requests", m.Stats.Requests),
                    ("$client", m.Stats.ClientErrors), ("$server", m.Stats.ServerErrors), ("$timeouts", m.Stats.Timeouts), ("$limits", m.Stats.LimitHits),
                    ("$sum", m.Stats.LatencySumSeconds), ("$buckets", string.Join(',', m.Stats.TrimmedBuckets())), ("$memory", m.Stats.MemoryPeakBytes));
            }

            foreach (var m in nodes)
            {
                await ExecuteAsync(connection, transaction, "INSERT OR REPLACE INTO node_minutes (node, minute_ms, usage) VALUES ($node, $minute, $usage)", cancellationToken,
                    ("$node", m.Node), ("$minute", m.Minute.ToUnixTimeMilliseconds()), ("$usage", JsonSerializer.Serialize(m.Usage, CoreJson.Default.NodeUsageSample)));
            }

            await transaction.CommitAsync(cancellationToken);
        }
        finally
        {
            ReleaseWriteLock();
        }
    }

    public async Task<IReadOnlyList<AppMinute>> ListAppMinutesAsync(DateTimeOffset since, string? app, CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync(cancellationToken);
        await using var command = Command(connection, null, """
            SELECT app, revision, node, minute_ms, requests, client_errors, server_errors, timeouts, limit_hits, latency_sum, buckets, memory_peak
            FROM app_minutes WHERE minute_ms >= $since AND ($app IS NULL OR app = $app) ORDER BY minute_ms, app, revision, node
            """, ("$since", since.ToUnixTimeMilliseconds()), ("$app", app));
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        var minutes = new List<AppMinute>();
        while (await reader.ReadAsync(cancellationToken))
        {
            var stats = new RequestStats
            {
                Requests = reader.GetInt64(4),
                ClientErrors = reader.GetInt64(5),
                ServerErrors = reader.GetInt64(6),
                Timeouts = reader.GetInt64(7),
                LimitHits = reader.GetInt64(8),
                LatencySumSeconds = reader.GetDouble(9),
                MemoryPeakBytes = reader.GetInt64(11),
            };
            var buckets = reader.GetString(10);
            if (buckets.Length > 0)
            {
                stats.AddBuckets([.. buckets.Split(',').Select(b => long.Parse(b, CultureInfo.InvariantCulture))]);
            }

            minutes.Add(new AppMinute(reader.GetString(0), reader.GetInt64(1), reader.GetString(2), DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(3)), stats));
        }

        return minutes;
    }

    public async Task<IReadOnlyList<NodeMinute>> ListNodeMinutesAsync(DateTimeOffset since, string? node, CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync(cancellationToken);
        await using var command = Command(connection, null,
            "SELECT node, minute_ms, usage FROM node_minutes WHERE minute_ms >= $since AND ($node IS NULL OR node = $node) ORDER BY minute_ms, node",
            ("$since", since.ToUnixTimeMilliseconds()), ("$node", node));
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        var minutes = new List<NodeMinute>();
        while (await reader.ReadAsync(cancellationToken))
        {
            minutes.Add(new NodeMinute(reader.GetString(0), DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(1)),
                JsonSerializer.Deserialize(reader.GetString(2), CoreJson.Default.NodeUsageSample)!));
        }

        return minutes;
    }

    public async Task PruneMetricsAsync(DateTimeOffset before, CancellationToken cancellationToken)
    {
        var cutoff = before.ToUnixTimeMilliseconds();
        await ExecuteLockedAsync("DELETE FROM app_minutes WHERE minute_ms < $cutoff; DELETE FROM node_minutes WHERE minute_ms < $cutoff", cancellationToken, ("$cutoff", cutoff));
    }
}
