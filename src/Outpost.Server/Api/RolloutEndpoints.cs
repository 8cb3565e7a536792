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
/// An Application's revisions and rollouts: every spec change is one revision (its generation),
/// kept for history and undo. Undo writes a chosen revision's spec back as the next generation
/// and sends it to every node at once; the history shows what happened. The rollout of the
/// latest revision can be watched, paused and resumed.
/// </summary>
internal static class RolloutEndpoints
{
    private const string App = OutpostPrefix + "/applications/{name}";

    public static void MapRollouts(this IEndpointRouteBuilder app)
    {
        app.MapGet(App + "/revisions", HistoryAsync);
        app.MapPost(App + "/rollback", RollbackAsync);
        app.MapGet(App + "/rollout", StatusAsync);
        app.MapPost(App + "/rollout/pause", (string name, HttpContext context, IControlPlaneStore store, RolloutController rollouts, CancellationToken ct) =>
            PauseAsync(name, paused: true, context, store, rollouts, ct));
        app.MapPost(App + "/rollout/resume", (string name, HttpContext context, IControlPlaneStore store, RolloutController rollouts, CancellationToken ct) =>
            PauseAsync(name, paused: false, context, store, rollouts, ct));
    }

    /// <summary>
    /// The rollout of the app's latest revision: phase, step, and per node the revision it
    /// should run and what it reports, in the order nodes receive a new revision.
    /// </summary>
    private static async Task<IResult> StatusAsync(string name, IControlPlaneStore store, RolloutController rollouts, ResourceView view, CancellationToken ct)
    {
        var app = await store.GetAsync(ResourceKind.Application.Kind, name, ct);
        if (app is null)
        {
            return Error(ApiStatus.NotFound(ResourceKind.Application.Kind, name));
        }

        var state = (await store.ListRolloutsAsync(ct)).GetValueOrDefault(name);
        var spec = ApplicationSpec.FromJson(app.Spec());
        // Only the nodes its selector matches are read: an app on 1,000 nodes of 10,000 reads 1,000.
        var nodes = (await store.ListAsync(ResourceKind.Node.Kind, spec.NodeSelector, ct)).Items
            .Where(n => Sync.NodeDesiredState.Places(spec, n))
            .ToDictionary(n => n.Name, StringComparer.Ordinal);
        var order = Core.Rollouts.RolloutPlanner.Order(name, nodes.Keys);
        var plan = state?.Immediate == true ? [(nodes.Count, TimeSpan.Zero)] : spec.Rollout.Plan(nodes.Count);
        var nodeItems = new JsonArray();
        foreach (var node in order)
        {
            // Each node's state and its report of this app, read from its status without rendering
            // it: `rollout status --watch` and the fleet bench ask this of a thousand nodes a second.
            var (beat, apps) = Sync.NodeStatusReader.Read(nodes[node].StatusJson);
            var item = new JsonObject
            {
                ["name"] = node,
                ["state"] = view.NodeStateOf(node, beat),
                ["desiredRevision"] = state?.RevisionFor(node) ?? app.Generation,
            };
            if (apps.TryGetValue(name, out var reported))
            {
                item["revision"] = reported.Generation;
                item["appState"] = reported.State;
                item["message"] = reported.Message;
                if (reported.FailedGeneration != 0)
                {
                    item["failedRevision"] = reported.FailedGeneration;
                }
            }
            else
            {
                item["revision"] = null;
                item["appState"] = null;
                item["message"] = "";
            }

            nodeItems.Add((JsonNode)item);
        }

        return Json(new JsonObject
        {
            ["kind"] = "Rollout",
            ["apiVersion"] = ResourceKind.Application.ApiVersion,
            ["metadata"] = new JsonObject { ["name"] = name, ["generation"] = app.Generation },
            ["spec"] = new JsonObject
            {
                ["strategy"] = Core.Rollouts.RolloutState.Format(spec.Rollout.Strategy),
                ["progressDeadline"] = Core.Rollouts.RolloutPlanner.Describe(spec.Rollout.ProgressDeadline),
                ["autoRollback"] = spec.Rollout.AutoRollback,
                ["errorRate"] = new JsonObject
                {
                    ["threshold"] = spec.Rollout.ErrorRate.Threshold,
                    ["window"] = Core.Rollouts.RolloutPlanner.Describe(spec.Rollout.ErrorRate.Window),
                    ["minRequests"] = spec.Rollout.ErrorRate.MinRequests,
                },
                ["plan"] = new JsonArray([.. plan.Select((step, i) => (JsonNode)new JsonObject
                {
                    ["step"] = i + 1,
                    ["nodes"] = step.Nodes,
                    ["pause"] = step.Pause > TimeSpan.Zero ? Core.Rollouts.RolloutPlanner.Describe(step.Pause) : null,
                })]),
            },
            ["status"] = state?.ToJson(),
            ["nodes"] = nodeItems,
        });
    }

    private static async Task<IResult> PauseAsync(string name, bool paused, HttpContext context, IControlPlaneStore store, RolloutController rollouts, CancellationToken ct)
    {
        if (await store.GetAsync(ResourceKind.Application.Kind, name, ct) is null)
        {
            return Error(ApiStatus.NotFound(ResourceKind.Application.Kind, name));
        }

        var state = await rollouts.SetPausedAsync(name, paused, ct);
        if (state is null)
        {
            return Error(new ApiStatus(409, StatusReasons.Conflict, $"application \"{name}\" has no rollout yet to {(paused ? "pause" : "resume")}; try again in a moment"));
        }

        context.Items[OutpostServer.AuditDetailKey] = $"Application/{name} rollout of revision {state.Revision} {(paused ? "paused" : "resumed")}";
        return Json(new JsonObject { ["kind"] = "Rollout", ["apiVersion"] = ResourceKind.Application.ApiVersion, ["metadata"] = new JsonObject { ["name"] = name }, ["status"] = state.ToJson() });
    }

    private static async Task<IResult> HistoryAsync(string name, IControlPlaneStore store, RolloutController rollouts, ServerOptions options, CancellationToken ct)
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
                ["outcome"] = r.Revision == current.Generation && rollouts.Current(name) is { IsTerminal: false } live ? live.Phase.ToString() : r.Outcome,
                ["spec"] = JsonNode.Parse(r.SpecJson),
            })]),
        });
    }

    /// <summary>POST {"toRevision": N} (default: the revision before the current one).</summary>
    private static async Task<IResult> RollbackAsync(string name, HttpContext context, IControlPlaneStore store, RolloutController rollouts, ResourceView view, ServerOptions options, CancellationToken ct)
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
            // Through the rollout controller: the revision goes to every node at once, not step by step.
            result = await rollouts.UndoAsync(name, async () => (await store.WriteAsync([new ResourceWrite
            {
                Op = WriteOp.Replace,
                Kind = ResourceKind.Application.Kind,
                Name = name,
                Labels = current.Labels,
                Annotations = target.SpecJson == current.SpecJson ? current.Annotations : new Dictionary<string, string>(current.Annotations, StringComparer.Ordinal)
                {
                    // The generation this write makes (its spec differs, so it moves one): all at once.
                    [RolloutController.UndoAnnotation] = (current.Generation + 1).ToString(CultureInfo.InvariantCulture),
                },
                SpecJson = target.SpecJson,
                ExpectedResourceVersion = current.ResourceVersion,
            }], ct))[0], ct);
        }
        catch (StoreException ex)
        {
            return Error(ResourceWriter.ToStatus(ex)); // changed meanwhile: nothing was written
        }

        context.Items[OutpostServer.AuditDetailKey] = $"Application/{name} back to revision {target.Revision} ({target.Digest}) as revision {result.Resource.Generation}";
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
