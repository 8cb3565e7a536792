using System.Globalization;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Outpost.Core.Api;
using Outpost.Core.Resources;
using Outpost.Core.Store;

namespace Outpost.Server.Api;

/// <summary>
/// GET /apis/outpost.dev/v1/logs?app=&amp;node=&amp;since=&amp;limit=: the newest matching lines in
/// time order; with after=CURSOR, the lines that arrived since, in arrival order (what -f polls).
/// </summary>
public static class LogEndpoints
{
    private const int MaxLimit = 10_000;

    public static void MapLogs(this IEndpointRouteBuilder app) =>
        app.MapGet(ApiEndpoints.OutpostPrefix + "/logs", ListAsync);

    private static async Task<IResult> ListAsync(HttpContext context, IControlPlaneStore store, TimeProvider time, CancellationToken ct)
    {
        var q = context.Request.Query;
        DateTimeOffset? since = null;
        if (q["since"].ToString() is { Length: > 0 } sinceText)
        {
            if (Durations.TryParse(sinceText, out var ago) && ago > TimeSpan.Zero)
            {
                since = time.GetUtcNow() - ago;
            }
            else if (DateTimeOffset.TryParse(sinceText, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var at))
            {
                since = at;
            }
            else
            {
                return ApiEndpoints.Error(ApiStatus.BadRequest($"since '{sinceText}' is neither a duration (10m, 1h) nor a time (RFC 3339)"));
            }
        }

        long? after = null;
        if (q["after"].ToString() is { Length: > 0 } afterText)
        {
            if (!long.TryParse(afterText, NumberStyles.None, CultureInfo.InvariantCulture, out var cursor))
            {
                return ApiEndpoints.Error(ApiStatus.BadRequest($"after '{afterText}' is not a cursor (the metadata.continue of an earlier answer)"));
            }

            after = cursor;
        }

        var limit = 1000;
        if (q["limit"].ToString() is { Length: > 0 } limitText && (!int.TryParse(limitText, NumberStyles.None, CultureInfo.InvariantCulture, out limit) || limit is < 1 or > MaxLimit))
        {
            return ApiEndpoints.Error(ApiStatus.BadRequest($"limit '{limitText}' must be 1 to {MaxLimit}"));
        }

        var query = new LogQuery(
            App: q["app"].ToString() is { Length: > 0 } app ? app : null,
            Node: q["node"].ToString() is { Length: > 0 } node ? node : null,
            Since: since,
            AfterId: after,
            Limit: limit,
            AgentOnly: q["source"] == "agent");
        var (lines, next) = await store.ListLogsAsync(query, ct);
        var items = new JsonArray([.. lines.Select(l => (JsonNode)new JsonObject
        {
            ["time"] = l.At.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture),
            ["node"] = l.Node,
            ["app"] = l.App,
            ["revision"] = l.Revision,
            ["level"] = l.Level,
            ["message"] = l.Message,
            ["sequence"] = l.Sequence,
        })]);
        return ApiEndpoints.Json(new JsonObject
        {
            ["kind"] = "LogList",
            ["apiVersion"] = "outpost.dev/v1",
            ["metadata"] = new JsonObject { ["continue"] = next.ToString(CultureInfo.InvariantCulture) },
            ["items"] = items,
        });
    }
}
