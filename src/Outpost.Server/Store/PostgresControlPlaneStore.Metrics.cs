using System.Globalization;
using System.Text.Json;
using NpgsqlTypes;
using Outpost.Core.Metrics;
using Outpost.Core.Resources;

namespace Outpost.Server.Store;

/// <summary>App and node metrics at one-minute resolution.</summary>
public sealed partial class PostgresControlPlaneStore
{
    public async Task SaveMetricMinutesAsync(IReadOnlyCollection<AppMinute> apps, IReadOnlyCollection<NodeMinute> nodes, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(apps);
        ArgumentNullException.ThrowIfNull(nodes);
        if (apps.Count == 0 && nodes.Count == 0)
        {
            return;
        }

        // One upsert per table. A batch names each minute once (the last write of it wins, as
        // when written one by one) and in key order, so two replicas saving overlapping minutes
        // take their row locks in the same order and cannot deadlock.
        var appRows = apps.GroupBy(m => (m.App, m.Revision, m.Node, Minute: m.Minute.ToUnixTimeMilliseconds())).Select(g => g.Last())
            .OrderBy(m => m.App, StringComparer.Ordinal).ThenBy(m => m.Revision).ThenBy(m => m.Node, StringComparer.Ordinal).ThenBy(m => m.Minute).ToArray();
        var nodeRows = nodes.GroupBy(m => (m.Node, Minute: m.Minute.ToUnixTimeMilliseconds())).Select(g => g.Last())
            .OrderBy(m => m.Node, StringComparer.Ordinal).ThenBy(m => m.Minute).ToArray();
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        if (appRows.Length > 0)
        {
            await using var upsert = Command(connection, """
                INSERT INTO app_minutes (app, revision, node, minute_ms, requests, client_errors, server_errors, timeouts, limit_hits, latency_sum, buckets, memory_peak)
                SELECT * FROM unnest(@app, @rev, @node, @minute, @requests, @client, @server, @timeouts, @limits, @sum, @buckets, @memory)
                ON CONFLICT (app, revision, node, minute_ms) DO UPDATE SET requests = excluded.requests, client_errors = excluded.client_errors,
                  server_errors = excluded.server_errors, timeouts = excluded.timeouts, limit_hits = excluded.limit_hits, latency_sum = excluded.latency_sum,
                  buckets = excluded.buckets, memory_peak = excluded.memory_peak
                """);
            AddArray(upsert, "app", NpgsqlDbType.Text, appRows.Select(m => m.App).ToArray());
            AddArray(upsert, "rev", NpgsqlDbType.Bigint, appRows.Select(m => m.Revision).ToArray());
            AddArray(upsert, "node", NpgsqlDbType.Text, appRows.Select(m => m.Node).ToArray());
            AddArray(upsert, "minute", NpgsqlDbType.Bigint, appRows.Select(m => m.Minute.ToUnixTimeMilliseconds()).ToArray());
            AddArray(upsert, "requests", NpgsqlDbType.Bigint, appRows.Select(m => m.Stats.Requests).ToArray());
            AddArray(upsert, "client", NpgsqlDbType.Bigint, appRows.Select(m => m.Stats.ClientErrors).ToArray());
            AddArray(upsert, "server", NpgsqlDbType.Bigint, appRows.Select(m => m.Stats.ServerErrors).ToArray());
            AddArray(upsert, "timeouts", NpgsqlDbType.Bigint, appRows.Select(m => m.Stats.Timeouts).ToArray());
            AddArray(upsert, "limits", NpgsqlDbType.Bigint, appRows.Select(m => m.Stats.LimitHits).ToArray());
            AddArray(upsert, "sum", NpgsqlDbType.Double, appRows.Select(m => m.Stats.LatencySumSeconds).ToArray());
            AddArray(upsert, "buckets", NpgsqlDbType.Text, appRows.Select(m => string.Join(',', m.Stats.TrimmedBuckets())).ToArray());
            AddArray(upsert, "memory", NpgsqlDbType.Bigint, appRows.Select(m => m.Stats.MemoryPeakBytes).ToArray());
            await upsert.ExecuteNonQueryAsync(cancellationToken);
        }

        if (nodeRows.Length > 0)
        {
            await using var upsert = Command(connection, """
                INSERT INTO node_minutes (node, minute_ms, usage) SELECT * FROM unnest(@node, @minute, @usage)
                ON CONFLICT (node, minute_ms) DO UPDATE SET usage = excluded.usage
                """);
            AddArray(upsert, "node", NpgsqlDbType.Text, nodeRows.Select(m => m.Node).ToArray());
            AddArray(upsert, "minute", NpgsqlDbType.Bigint, nodeRows.Select(m => m.Minute.ToUnixTimeMilliseconds()).ToArray());
            AddArray(upsert, "usage", NpgsqlDbType.Text, nodeRows.Select(m => JsonSerializer.Serialize(m.Usage, CoreJson.Default.NodeUsageSample)).ToArray());
            await upsert.ExecuteNonQueryAsync(cancellationToken);
        }

        await transaction.CommitAsync(cancellationToken);
    }

    public async Task<IReadOnlyList<AppMinute>> ListAppMinutesAsync(DateTimeOffset since, string? app, CancellationToken cancellationToken)
    {
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken);
        await using var command = Command(connection, $"""
            SELECT app, revision, node, minute_ms, requests, client_errors, server_errors, timeouts, limit_hits, latency_sum, buckets, memory_peak
            FROM app_minutes WHERE minute_ms >= @since {(app is null ? "" : "AND app = @app")} ORDER BY minute_ms, app, revision, node
            """, ("since", since.ToUnixTimeMilliseconds()), ("app", app));
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
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken);
        await using var command = Command(connection, $"""
            SELECT node, minute_ms, usage FROM node_minutes WHERE minute_ms >= @since {(node is null ? "" : "AND node = @node")} ORDER BY minute_ms, node
            """, ("since", since.ToUnixTimeMilliseconds()), ("node", node));
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
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken);
        await ExecuteAsync(connection, "DELETE FROM app_minutes WHERE minute_ms < @cutoff; DELETE FROM node_minutes WHERE minute_ms < @cutoff", cancellationToken,
            ("cutoff", before.ToUnixTimeMilliseconds()));
    }
}
