using System.Globalization;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Outpost.Core.Api;
using Outpost.Core.Resources;
using Outpost.Core.Store;
using Outpost.Server.Sync;

namespace Outpost.Server.Api;

/// <summary>
/// What `kubectl describe node` reads besides the node: the pods on it (Outpost's apps
/// running there, in namespace "outpost", never a 404) and the node's heartbeat lease in
/// kube-node-lease (holder, renew time, duration).
/// </summary>
public static class KubeNodeViews
{
    /// <summary>Apps show as pods in this namespace (Outpost's kinds are cluster-wide).</summary>
    public const string AppNamespace = "outpost";

    public static void MapKubeNodeViews(this IEndpointRouteBuilder app)
    {
        app.MapGet("/api/v1/pods", PodsAsync);
        app.MapGet("/api/v1/namespaces/{ns}/pods", (string ns, HttpContext context, IControlPlaneStore store, ResourceView view, CancellationToken ct) =>
            ns == AppNamespace ? PodsAsync(context, store, view, ct) : Task.FromResult(ApiEndpoints.Json(PodList([]))));
        app.MapGet("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{name}", LeaseAsync);
    }

    private static async Task<IResult> PodsAsync(HttpContext context, IControlPlaneStore store, ResourceView view, CancellationToken ct)
    {
        string? node = null;
        foreach (var term in context.Request.Query["fieldSelector"].ToString().Split(',', StringSplitOptions.RemoveEmptyEntries))
        {
            if (term.StartsWith("spec.nodeName=", StringComparison.Ordinal))
            {
                node = term["spec.nodeName=".Length..];
            }
        }

        var specs = (await store.ListAsync(ResourceKind.Application.Kind, ct)).Items.ToDictionary(a => a.Name, a => ApplicationSpec.FromJson(a.Spec()), StringComparer.Ordinal);
        var pods = new List<JsonObject>();
        foreach (var resource in (await store.ListAsync(ResourceKind.Node.Kind, ct)).Items.Where(n => node is null || n.Name == node))
        {
            var rendered = view.Render(resource);
            if (rendered["status"]?["apps"] is not JsonObject apps)
            {
                continue;
            }

            foreach (var (name, state) in apps.OrderBy(a => a.Key, StringComparer.Ordinal))
            {
                var ready = (string?)state?["state"] == "Ready";
                var generation = (long?)state?["generation"] ?? 0;
                var spec = specs.GetValueOrDefault(name);
                // A container app shows its runtime class and image; a Wasm app the module's revision.
                var (runtimeClass, image) = spec is { IsContainer: true }
                    ? (spec.RuntimeClassName ?? "runc", $"{spec.Image}@{spec.ImageDigest}")
                    : ("outpost-wasm", $"outpost.dev/{name}@revision-{generation}");
                JsonObject containerState = ready
                    ? new JsonObject { ["running"] = new JsonObject() }
                    : new JsonObject { ["waiting"] = new JsonObject { ["reason"] = (string?)state?["state"] ?? "Pending", ["message"] = (string?)state?["message"] ?? "" } };
                pods.Add(new JsonObject
                {
                    ["kind"] = "Pod",
                    ["apiVersion"] = "v1",
                    ["metadata"] = new JsonObject
                    {
                        ["name"] = $"{name}-{resource.Name}",
                        ["namespace"] = AppNamespace,
                        ["labels"] = new JsonObject { ["outpost.dev/app"] = name },
                        ["creationTimestamp"] = ResourceJson.FormatTimestamp(resource.CreationTimestamp),
                    },
                    ["spec"] = new JsonObject
                    {
                        ["nodeName"] = resource.Name,
                        ["runtimeClassName"] = runtimeClass,
                        ["containers"] = new JsonArray(new JsonObject { ["name"] = name, ["image"] = image }),
                    },
                    ["status"] = new JsonObject
                    {
                        ["phase"] = ready ? "Running" : "Pending",
                        ["containerStatuses"] = new JsonArray(new JsonObject { ["name"] = name, ["image"] = image, ["ready"] = ready, ["restartCount"] = 0, ["state"] = containerState }),
                        ["conditions"] = new JsonArray(new JsonObject { ["type"] = "Ready", ["status"] = ready ? "True" : "False", ["message"] = (string?)state?["message"] ?? "" }),
                    },
                });
            }
        }

        return ApiEndpoints.Json(PodList(pods));
    }

    private static JsonObject PodList(List<JsonObject> pods) => new()
    {
        ["kind"] = "PodList",
        ["apiVersion"] = "v1",
        ["metadata"] = new JsonObject { ["resourceVersion"] = "0" },
        ["items"] = new JsonArray([.. pods]),
    };

    private static async Task<IResult> LeaseAsync(string name, IControlPlaneStore store, FleetPresence leases, ResourceView view, Hosting.ServerOptions options, CancellationToken ct)
    {
        var resource = await store.GetAsync(ResourceKind.Node.Kind, name, ct);
        if (resource is null)
        {
            return ApiEndpoints.Error(new ApiStatus(404, StatusReasons.NotFound, $"leases.coordination.k8s.io \"{name}\" not found", Kind: "leases", Name: name));
        }

        var beat = view.Render(resource)["status"]?["lastHeartbeatTime"]?.GetValue<string>();
        var renew = leases.Get(name)?.LastHeartbeat ?? (DateTimeOffset.TryParse(beat, CultureInfo.InvariantCulture, out var at) ? at : resource.CreationTimestamp);
        return ApiEndpoints.Json(new JsonObject
        {
            ["kind"] = "Lease",
            ["apiVersion"] = "coordination.k8s.io/v1",
            ["metadata"] = new JsonObject
            {
                ["name"] = name,
                ["namespace"] = "kube-node-lease",
                ["creationTimestamp"] = ResourceJson.FormatTimestamp(resource.CreationTimestamp),
            },
            ["spec"] = new JsonObject
            {
                ["holderIdentity"] = name,
                ["leaseDurationSeconds"] = (int)Math.Ceiling(options.NodeLease.TotalSeconds),
                // A MicroTime, as Kubernetes writes it.
                ["renewTime"] = renew.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.ffffff'Z'", CultureInfo.InvariantCulture),
            },
        });
    }
}
