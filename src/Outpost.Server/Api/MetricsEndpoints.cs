using System.Globalization;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Outpost.Core.Api;
using Outpost.Core.Metrics;
using Outpost.Core.Resources;
using Outpost.Server.Monitoring;

namespace Outpost.Server.Api;

/// <summary>
/// GET /metrics (Prometheus text), the minute series behind `outpost top` and the dashboard
/// (GET /apis/outpost.dev/v1/metrics/nodes?node=&amp;series=true and /metrics/apps?app=&amp;series=true,
/// both with window=5m by default), and the alerts
/// the rules hold (GET /apis/outpost.dev/v1/alerts).
/// </summary>
public static class MetricsEndpoints
{
    /// <summary>Largest window the summaries take; the retention bounds it too.</summary>
    private static readonly TimeSpan MaxWindow = TimeSpan.FromHours(24);

    public static void MapMetrics(this IEndpointRouteBuilder app)
    {
        // ?name[]=FAMILY (repeated) scrapes just those families, as Prometheus's federation takes match[].
        app.MapGet("/metrics", async (ServerMetrics metrics, HttpContext context, CancellationToken ct) =>
        {
            var names = context.Request.Query["name[]"];
            IReadOnlySet<string>? only = names.Count == 0 ? null : names.OfType<string>().ToHashSet(StringComparer.Ordinal);
            return Results.Text(await metrics.RenderAsync(only, ct), PrometheusText.ContentType);
        });
        app.MapGet(ApiEndpoints.OutpostPrefix + "/metrics/nodes", NodesAsync);
        app.MapGet(ApiEndpoints.OutpostPrefix + "/metrics/apps", AppsAsync);
        app.MapGet(ResourceKind.Alert.CollectionPath, (AlertEvaluator alerts) => ApiEndpoints.Json(AlertList(alerts)));
    }

    /// <summary>The alerts the rules hold, newest change first per rule: an AlertList for `outpost get alerts`.</summary>
    private static JsonObject AlertList(AlertEvaluator alerts)
    {
        var items = new JsonArray();
        foreach (var (alert, rule) in alerts.Current())
        {
            var since = alert.State switch
            {
                AlertEvaluator.Firing => alert.FiredAt,
                AlertEvaluator.Resolved => alert.ResolvedAt,
                _ => alert.ActiveSince,
            };
            items.Add((JsonNode)new JsonObject
            {
                ["kind"] = ResourceKind.Alert.Kind,
                ["apiVersion"] = ResourceKind.Alert.ApiVersion,
                ["rule"] = alert.Rule,
                ["target"] = alert.Target,
                ["state"] = alert.State,
                ["severity"] = rule?.Severity ?? "warning",
                ["condition"] = rule?.ConditionName,
                ["value"] = alert.Value,
                ["message"] = alert.Message,
                ["since"] = since is { } at ? ResourceJson.FormatTimestamp(at) : null,
                ["activeAt"] = ResourceJson.FormatTimestamp(alert.ActiveSince),
                ["firedAt"] = alert.FiredAt is { } fired ? ResourceJson.FormatTimestamp(fired) : null,
                ["resolvedAt"] = alert.ResolvedAt is { } resolved ? ResourceJson.FormatTimestamp(resolved) : null,
            });
        }

        return new JsonObject { ["kind"] = ResourceKind.Alert.ListKind, ["apiVersion"] = ResourceKind.Alert.ApiVersion, ["items"] = items };
    }

    private static async Task<IResult> NodesAsync(HttpContext context, MetricsRecorder recorder, Core.Store.IControlPlaneStore store, ResourceView view, TimeProvider time, CancellationToken ct)
    {
        if (!TryWindow(context, out var window, out var error))
        {
            return error;
        }

        var only = context.Request.Query["node"].ToString() is { Length: > 0 } wanted ? wanted : null;
        var minutes = await recorder.NodeMinutesAsync(WindowStart(time.GetUtcNow(), window), only, ct);
        var latest = recorder.Usage;
        var items = new JsonArray();
        foreach (var resource in (await store.ListAsync(ResourceKind.Node.Kind, ct)).Items.Where(n => only is null || n.Name == only))
        {
            var node = view.Render(resource);
            var mine = minutes.Where(m => m.Node == resource.Name).ToList();
            var item = new JsonObject
            {
                ["node"] = resource.Name,
                ["state"] = node["status"]?["state"]?.GetValue<string>(),
            };
            var usage = latest.GetValueOrDefault(resource.Name) ?? mine.LastOrDefault()?.Usage;
            if (usage is not null)
            {
                item["usage"] = MetricsRecorder.ToJson(usage);
            }

            if (mine.Count > 0)
            {
                item["cpuRatioAverage"] = Math.Round(mine.Average(m => m.Usage.CpuRatio), 4);
                item["cpuRatioMax"] = Math.Round(mine.Max(m => m.Usage.CpuRatio), 4);
                if (context.Request.Query["series"] == "true")
                {
                    // The dashboard's usage over time: each minute's last sample.
                    item["minutes"] = new JsonArray([.. mine.OrderBy(m => m.Minute).Select(m =>
                    {
                        var point = MetricsRecorder.ToJson(m.Usage);
                        point["minute"] = ResourceJson.FormatTimestamp(m.Minute);
                        return (JsonNode)point;
                    })]);
                }
            }

            items.Add((JsonNode)item);
        }

        return ApiEndpoints.Json(new JsonObject { ["kind"] = "NodeMetricsList", ["window"] = Format(window), ["items"] = items });
    }

    private static async Task<IResult> AppsAsync(HttpContext context, MetricsRecorder recorder, TimeProvider time, CancellationToken ct)
    {
        if (!TryWindow(context, out var window, out var error))
        {
            return error;
        }

        var app = context.Request.Query["app"].ToString() is { Length: > 0 } name ? name : null;
        var now = time.GetUtcNow();
        var from = WindowStart(now, window);
        var minutes = await recorder.AppMinutesAsync(from, app, ct);
        var items = new JsonArray();
        foreach (var group in minutes.GroupBy(m => (m.App, m.Revision)).OrderBy(g => g.Key.App, StringComparer.Ordinal).ThenBy(g => g.Key.Revision))
        {
            var sum = new RequestStats();
            foreach (var m in group)
            {
                sum.Add(m.Stats);
            }

            var item = Summary(sum, now - from);
            item["app"] = group.Key.App;
            item["revision"] = group.Key.Revision;
            item["nodes"] = group.Select(m => m.Node).Distinct(StringComparer.Ordinal).Count();
            if (context.Request.Query["series"] == "true")
            {
                item["minutes"] = new JsonArray([.. group.GroupBy(m => m.Minute).OrderBy(g => g.Key).Select(g =>
                {
                    var minute = new RequestStats();
                    foreach (var m in g)
                    {
                        minute.Add(m.Stats);
                    }

                    var point = Summary(minute, TimeSpan.FromMinutes(1));
                    point["minute"] = ResourceJson.FormatTimestamp(g.Key);
                    return (JsonNode)point;
                })]);
            }

            items.Add((JsonNode)item);
        }

        return ApiEndpoints.Json(new JsonObject { ["kind"] = "AppMetricsList", ["window"] = Format(window), ["items"] = items });
    }

    /// <summary>
    /// Where a window's minutes begin: the start of the minute the window starts in, so the
    /// window is covered whole (and up to a minute more; rates divide by the span covered).
    /// </summary>
    private static DateTimeOffset WindowStart(DateTimeOffset now, TimeSpan window)
    {
        var start = (now - window).ToUnixTimeMilliseconds();
        return DateTimeOffset.FromUnixTimeMilliseconds(start - (start % 60_000));
    }

    private static JsonObject Summary(RequestStats stats, TimeSpan window) => new()
    {
        ["requests"] = stats.Requests,
        ["requestsPerSecond"] = Math.Round(stats.Requests / window.TotalSeconds, 3),
        ["clientErrors"] = stats.ClientErrors,
        ["serverErrors"] = stats.ServerErrors,
        ["errorRatio"] = stats.Requests > 0 ? Math.Round((double)stats.ServerErrors / stats.Requests, 4) : 0,
        ["timeouts"] = stats.Timeouts,
        ["limitHits"] = stats.LimitHits,
        ["latencyP50Seconds"] = stats.Quantile(0.5) is { } p50 ? Math.Round(p50, 6) : null,
        ["latencyP99Seconds"] = stats.Quantile(0.99) is { } p99 ? Math.Round(p99, 6) : null,
        ["latencyMeanSeconds"] = stats.Requests > 0 ? Math.Round(stats.LatencySumSeconds / stats.Requests, 6) : null,
        ["memoryPeakBytes"] = stats.MemoryPeakBytes,
    };

    private static bool TryWindow(HttpContext context, out TimeSpan window, out IResult error)
    {
        error = null!;
        var text = context.Request.Query["window"].ToString();
        window = TimeSpan.FromMinutes(5);
        if (text.Length == 0)
        {
            return true;
        }

        if (!Durations.TryParse(text, out window) || window < TimeSpan.FromMinutes(1) || window > MaxWindow)
        {
            error = ApiEndpoints.Error(ApiStatus.BadRequest($"window '{text}' must be a duration from 1m to 24h (e.g. 5m, 1h)"));
            return false;
        }

        return true;
    }

    private static string Format(TimeSpan window) => window.TotalHours >= 1 && window.TotalHours == Math.Floor(window.TotalHours)
        ? string.Create(CultureInfo.InvariantCulture, $"{window.TotalHours}h")
        : string.Create(CultureInfo.InvariantCulture, $"{window.TotalMinutes}m");
}
