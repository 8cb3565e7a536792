using System.Globalization;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Outpost.Core.Api;
using Outpost.Core.Resources;
using Outpost.Core.Store;
using Outpost.Core.Sync;
using Outpost.Server.Sync;
using static Outpost.Server.Api.ApiEndpoints;

namespace Outpost.Server.Api;

/// <summary>
/// A bucket's data as the cloud holds it: entries (read; written for two-way and
/// cloud-to-edge buckets) and the conflict log. Values travel as raw bytes in and base64
/// (plus UTF-8 text when they are text) out.
/// </summary>
internal static class BucketEndpoints
{
    private const string Buckets = OutpostPrefix + "/buckets/{bucket}";

    public static void MapBucketData(this IEndpointRouteBuilder app)
    {
        app.MapGet(Buckets + "/entries", ListEntriesAsync);
        app.MapGet(Buckets + "/entries/{**key}", GetEntryAsync);
        app.MapPut(Buckets + "/entries/{**key}", PutEntryAsync);
        app.MapDelete(Buckets + "/entries/{**key}", DeleteEntryAsync);
        app.MapGet(Buckets + "/conflicts", ListConflictsAsync);
    }

    private static async Task<IResult> ListEntriesAsync(string bucket, HttpContext context, IControlPlaneStore store, BucketSync sync, CancellationToken ct)
    {
        var (scope, error) = await ScopeAsync(bucket, context, sync, requireNode: false, ct);
        if (error is not null)
        {
            return error;
        }

        if (!TryLimit(context, out var limit, out var limitError))
        {
            return limitError;
        }

        var after = context.Request.Query["continue"].ToString();
        var entries = await store.ListBucketEntriesAsync(bucket, scope, after, limit, ct);
        var next = entries.Count < limit ? "" : scope is null ? $"{entries[^1].Scope}\n{entries[^1].Key}" : entries[^1].Key;
        return Json(new JsonObject
        {
            ["kind"] = "BucketEntryList",
            ["apiVersion"] = ResourceKind.Bucket.ApiVersion,
            ["metadata"] = new JsonObject { ["continue"] = next, ["revision"] = Revision(await store.GetBucketRevisionAsync(ct)) },
            ["items"] = new JsonArray([.. entries.Select(Entry)]),
        });
    }

    private static async Task<IResult> GetEntryAsync(string bucket, string key, HttpContext context, IControlPlaneStore store, BucketSync sync, CancellationToken ct)
    {
        var (scope, error) = await ScopeAsync(bucket, context, sync, requireNode: true, ct);
        if (error is not null)
        {
            return error;
        }

        var entry = await store.GetBucketEntryAsync(bucket, scope ?? "", key, ct);
        return entry is null || entry.Version.Value is null
            ? Error(new ApiStatus(404, StatusReasons.NotFound, $"key \"{key}\" not found in bucket \"{bucket}\"{(scope is { Length: > 0 } ? $" for node \"{scope}\"" : "")}"))
            : Json(Entry(entry));
    }

    private static async Task<IResult> PutEntryAsync(string bucket, string key, HttpContext context, BucketSync sync, CancellationToken ct)
    {
        if (context.Request.ContentLength > BucketSpec.MaxValueBytes)
        {
            return Error(new ApiStatus(413, "RequestEntityTooLarge", $"bucket values are limited to {BucketSpec.MaxValueBytes} bytes"));
        }

        using var buffer = new MemoryStream();
        await context.Request.Body.CopyToAsync(buffer, ct);
        return await WriteAsync(bucket, key, buffer.ToArray(), sync, ct);
    }

    private static Task<IResult> DeleteEntryAsync(string bucket, string key, BucketSync sync, CancellationToken ct) => WriteAsync(bucket, key, null, sync, ct);

    private static async Task<IResult> WriteAsync(string bucket, string key, byte[]? value, BucketSync sync, CancellationToken ct)
    {
        try
        {
            var (result, entry) = await sync.WriteFromCloudAsync(bucket, key, value, ct);
            if (result.Stored == 0)
            {
                // The policy kept a node's value: say so rather than pretend the write took.
                var policy = BucketSpec.Format((await sync.SpecAsync(bucket, ct)).ConflictPolicy);
                return Error(new ApiStatus(409, StatusReasons.Conflict,
                    $"bucket \"{bucket}\" keeps the value of key \"{key}\" written by {entry.Version.Stamp.Origin} under conflict policy {policy}; this write is in the conflict log"));
            }

            return Json(Entry(entry));
        }
        catch (BucketWriteException ex)
        {
            return Error(new ApiStatus(ex.Code, ex.Code == 404 ? StatusReasons.NotFound : StatusReasons.BadRequest, ex.Message));
        }
    }

    private static async Task<IResult> ListConflictsAsync(string bucket, HttpContext context, IControlPlaneStore store, BucketSync sync, CancellationToken ct)
    {
        try
        {
            await sync.SpecAsync(bucket, ct);
        }
        catch (BucketWriteException ex)
        {
            return Error(new ApiStatus(ex.Code, StatusReasons.NotFound, ex.Message));
        }

        if (!TryLimit(context, out var limit, out var limitError))
        {
            return limitError;
        }

        var continueText = context.Request.Query["continue"].ToString();
        var after = 0L;
        if (continueText.Length > 0 && !long.TryParse(continueText, NumberStyles.None, CultureInfo.InvariantCulture, out after))
        {
            return Error(ApiStatus.BadRequest($"continue='{continueText}' is not a conflict-log cursor (metadata.continue of the previous page)"));
        }

        var conflicts = await store.ListBucketConflictsAsync(bucket, after, limit, ct);
        var items = new JsonArray();
        foreach (var conflict in conflicts)
        {
            var item = new JsonObject
            {
                ["id"] = conflict.Id,
                ["key"] = conflict.Key,
                ["time"] = ResourceJson.FormatTimestamp(conflict.At),
                ["winner"] = Version(conflict.Winner),
                ["loser"] = Version(conflict.Loser),
            };
            if (conflict.Scope.Length > 0)
            {
                item["node"] = conflict.Scope;
            }

            items.Add((JsonNode)item);
        }

        return Json(new JsonObject
        {
            ["kind"] = "BucketConflictList",
            ["apiVersion"] = ResourceKind.Bucket.ApiVersion,
            ["metadata"] = new JsonObject { ["continue"] = conflicts.Count < limit ? "" : conflicts[^1].Id.ToString(CultureInfo.InvariantCulture) },
            ["items"] = items,
        });
    }

    /// <summary>
    /// The keyspace a request reads: the shared one of a two-way or cloud-to-edge bucket, a
    /// node's own of an edge-to-cloud bucket (every node's when listing without ?node=).
    /// </summary>
    private static async Task<(string? Scope, IResult? Error)> ScopeAsync(string bucket, HttpContext context, BucketSync sync, bool requireNode, CancellationToken ct)
    {
        BucketSpec spec;
        try
        {
            spec = await sync.SpecAsync(bucket, ct);
        }
        catch (BucketWriteException ex)
        {
            return (null, Error(new ApiStatus(ex.Code, StatusReasons.NotFound, ex.Message)));
        }

        var node = context.Request.Query["node"].ToString();
        return spec.Direction switch
        {
            BucketDirection.EdgeLocal => (null, Error(ApiStatus.BadRequest($"bucket \"{bucket}\" is edge-local: its data stays on the nodes and the cloud holds none"))),
            BucketDirection.EdgeToCloud when node.Length > 0 => (node, null),
            BucketDirection.EdgeToCloud when requireNode => (null, Error(ApiStatus.BadRequest($"bucket \"{bucket}\" is edge-to-cloud: each node has its own keys; name one with ?node= (--node)"))),
            BucketDirection.EdgeToCloud => (null, null),
            _ when node.Length > 0 => (null, Error(ApiStatus.BadRequest($"bucket \"{bucket}\" is {BucketSpec.Format(spec.Direction)}: the cloud and its nodes share one keyspace; ?node= (--node) applies to edge-to-cloud buckets"))),
            _ => ("", null),
        };
    }

    private static bool TryLimit(HttpContext context, out int limit, out IResult error)
    {
        limit = 500;
        error = null!;
        var text = context.Request.Query["limit"].ToString();
        if (text.Length > 0 && (!int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out limit) || limit is < 1 or > 10_000))
        {
            error = Error(ApiStatus.BadRequest($"limit='{text}' must be an integer from 1 to 10000"));
            return false;
        }

        return true;
    }

    private static JsonObject Entry(BucketEntry entry)
    {
        var item = new JsonObject { ["key"] = entry.Key };
        if (entry.Scope.Length > 0)
        {
            item["node"] = entry.Scope;
        }

        foreach (var (name, value) in Version(entry.Version))
        {
            item[name] = value?.DeepClone();
        }

        item["revision"] = entry.Revision;
        item["updateTime"] = ResourceJson.FormatTimestamp(entry.UpdatedAt);
        return item;
    }

    private static JsonObject Version(VersionedValue version)
    {
        var item = new JsonObject();
        if (version.Value is null)
        {
            item["deleted"] = true;
        }
        else
        {
            item["value"] = Convert.ToBase64String(version.Value);
            if (TryUtf8(version.Value, out var text))
            {
                item["text"] = text;
            }
        }

        item["origin"] = version.Stamp.Origin;
        item["stamp"] = version.Stamp.ToString();
        return item;
    }
}
