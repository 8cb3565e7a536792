using System.Globalization;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Outpost.Core.Api;
using Outpost.Core.Resources;
using Outpost.Core.Store;
using Outpost.Server.Hosting;
using Outpost.Server.Sync;
using static Outpost.Server.Api.ApiEndpoints;

namespace Outpost.Server.Api;

/// <summary>
/// An Application's revisions: every spec change is one (its generation), kept for history
/// and undo. Undo writes a chosen revision's spec back as the next generation, so the fleet
/// moves to it through the ordinary sync, and the history shows what happened.
/// </summary>
internal static class RolloutEndpoints
{
    private const string App = OutpostPrefix + "/applications/{name}";

    public static void MapRollouts(this IEndpointRouteBuilder app)
    {
        app.MapGet(App + "/revisions", HistoryAsync);
        app.MapPost(App + "/rollback", RollbackAsync);
    }

    private static async Task<IResult> HistoryAsync(string name, IControlPlaneStore store, ServerOptions options, CancellationToken ct)
    {
        var current = await store.GetAsync(ResourceKind.Application.Kind, name, ct);
        if (current is null)
        {
            return Error(ApiStatus.NotFound(ResourceKind.Application.Kind, name));
        }

        var revisions = await store.ListAppRevisionsAsync(name, options.RevisionHistory, ct);
        return Json(new JsonObject
        {
            ["kind"] = "ApplicationRevisionList",
            ["apiVersion"] = ResourceKind.Application.ApiVersion,
            ["metadata"] = new JsonObject { ["name"] = name, ["generation"] = current.Generation },
            ["items"] = new JsonArray([.. revisions.Select(r => (JsonNode)new JsonObject
            {
                ["revision"] = r.Revision,
                ["digest"] = r.Digest,
                ["creationTimestamp"] = ResourceJson.FormatTimestamp(r.CreatedAt),
                ["current"] = r.Revision == current.Generation,
                ["spec"] = JsonNode.Parse(r.SpecJson),
            })]),
        });
    }

    /// <summary>POST {"toRevision": N} (default: the revision before the current one).</summary>
    private static async Task<IResult> RollbackAsync(string name, HttpContext context, IControlPlaneStore store, ChangeFeed feed, ResourceView view, ServerOptions options, CancellationToken ct)
    {
        var body = new JsonObject();
        if (context.Request.ContentLength is > 0)
        {
            var (parsed, error) = await ReadObjectAsync(context, ct);
            if (parsed is null)
            {
                return Error(error!);
            }

            body = parsed;
        }

        long? toRevision = null;
        if (body["toRevision"] is { } node)
        {
            if (node is not JsonValue value || !value.TryGetValue<long>(out var n) || n < 1)
            {
                return Error(ApiStatus.Invalid("Rollback", name, [new StatusCause("toRevision", "expected a revision number (see `outpost rollout history`)")]));
            }

            toRevision = n;
        }

        var current = await store.GetAsync(ResourceKind.Application.Kind, name, ct);
        if (current is null)
        {
            return Error(ApiStatus.NotFound(ResourceKind.Application.Kind, name));
        }

        var revisions = await store.ListAppRevisionsAsync(name, options.RevisionHistory, ct);
        var target = toRevision is { } wanted
            ? revisions.FirstOrDefault(r => r.Revision == wanted)
            : revisions.FirstOrDefault(r => r.Revision < current.Generation && r.SpecJson != current.SpecJson);
        if (target is null)
        {
            var kept = string.Join(", ", revisions.Select(r => r.Revision.ToString(CultureInfo.InvariantCulture)));
            return Error(new ApiStatus(404, StatusReasons.NotFound, toRevision is null
                ? $"application \"{name}\" has no earlier revision to go back to (kept: {kept})"
                : $"application \"{name}\" has no revision {toRevision} (kept: {kept})"));
        }

        WriteResult result;
        try
        {
            result = (await store.WriteAsync([new ResourceWrite
        {
            Op = WriteOp.Replace,
            Kind = ResourceKind.Application.Kind,
            Name = name,
            Labels = current.Labels,
            Annotations = current.Annotations,
            SpecJson = target.SpecJson,
            ExpectedResourceVersion = current.ResourceVersion,
        }], ct))[0];
        }
        catch (StoreException ex)
        {
            return Error(ResourceWriter.ToStatus(ex)); // changed meanwhile: nothing was written
        }

        feed.Publish(result.Resource.ResourceVersion);
        context.Items[OutpostServer.AuditDetailKey] = $"Application/{name} back to revision {target.Revision} ({target.Digest}) as generation {result.Resource.Generation}";
        return Json(new JsonObject
        {
            ["kind"] = "Rollback",
            ["apiVersion"] = ResourceKind.Application.ApiVersion,
            ["toRevision"] = target.Revision,
            ["outcome"] = result.Outcome.ToString().ToLowerInvariant(),
            ["object"] = view.Render(result.Resource),
        });
    }
}
