using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Outpost.Core.Resources;

namespace Outpost.Server.Api;

/// <summary>
/// The discovery documents kubectl reads before anything else: /api and /apis in the
/// aggregated form (apidiscovery.k8s.io/v2, when the Accept header asks for it) or the
/// legacy one (APIVersions, APIGroupList), and an APIResourceList per group version. A
/// Content-Type that does not match what was asked makes kubectl believe the resource
/// types do not exist, so the answer names exactly the form it is in.
/// </summary>
public static class KubeDiscovery
{
    private const string AggregatedV2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

    private static readonly string[] WriteVerbs = ["create", "delete", "get", "list", "patch", "update", "watch"];
    private static readonly string[] NodeVerbs = ["delete", "get", "list", "watch"];
    private static readonly string[] ReadVerbs = ["get", "list"];

    /// <summary>One served resource: its kind, the verbs it takes and kubectl's short names for it.</summary>
    private sealed record Served(ResourceKind Kind, string[] Verbs, string[] ShortNames);

    private static readonly Served[] Resources =
    [
        new(ResourceKind.Node, NodeVerbs, ["no"]),
        new(ResourceKind.Event, ["list"], ["ev"]),
        new(ResourceKind.Application, WriteVerbs, ["app", "apps"]),
        new(ResourceKind.ConfigSet, WriteVerbs, ["cs"]),
        new(ResourceKind.Secret, WriteVerbs, []),
        new(ResourceKind.Bucket, WriteVerbs, []),
        new(ResourceKind.AlertRule, WriteVerbs, []),
        new(ResourceKind.Alert, ["list"], []),
        new(ResourceKind.Topic, ReadVerbs, []),
        new(ResourceKind.NetworkService, WriteVerbs, ["svc"]),
        new(ResourceKind.RuntimeClass, WriteVerbs, []),
    ];

    public static void MapKubeDiscovery(this IEndpointRouteBuilder app)
    {
        app.MapGet("/api", (HttpContext context) => Aggregated(context)
            ? Answer(new JsonObject
            {
                ["kind"] = "APIGroupDiscoveryList",
                ["apiVersion"] = "apidiscovery.k8s.io/v2",
                ["metadata"] = new JsonObject(),
                ["items"] = new JsonArray(GroupDiscovery("")),
            }, AggregatedV2)
            : Answer(new JsonObject
            {
                ["kind"] = "APIVersions",
                ["versions"] = new JsonArray("v1"),
                ["serverAddressByClientCIDRs"] = new JsonArray(new JsonObject { ["clientCIDR"] = "0.0.0.0/0", ["serverAddress"] = context.Request.Host.Value }),
            }));
        app.MapGet("/apis", (HttpContext context) => Aggregated(context)
            ? Answer(new JsonObject
            {
                ["kind"] = "APIGroupDiscoveryList",
                ["apiVersion"] = "apidiscovery.k8s.io/v2",
                ["metadata"] = new JsonObject(),
                ["items"] = new JsonArray([.. Groups().Select(g => (JsonNode)GroupDiscovery(g))]),
            }, AggregatedV2)
            : Answer(new JsonObject
            {
                ["kind"] = "APIGroupList",
                ["apiVersion"] = "v1",
                ["groups"] = new JsonArray([.. Groups().Select(g => (JsonNode)new JsonObject
                {
                    ["name"] = g,
                    ["versions"] = new JsonArray(new JsonObject { ["groupVersion"] = $"{g}/v1", ["version"] = "v1" }),
                    ["preferredVersion"] = new JsonObject { ["groupVersion"] = $"{g}/v1", ["version"] = "v1" },
                })]),
            }));
        app.MapGet("/api/v1", () => Answer(ResourceList("")));
        foreach (var group in Groups())
        {
            app.MapGet($"/apis/{group}", () => Answer(new JsonObject
            {
                ["kind"] = "APIGroup",
                ["apiVersion"] = "v1",
                ["name"] = group,
                ["versions"] = new JsonArray(new JsonObject { ["groupVersion"] = $"{group}/v1", ["version"] = "v1" }),
                ["preferredVersion"] = new JsonObject { ["groupVersion"] = $"{group}/v1", ["version"] = "v1" },
            }));
            app.MapGet($"/apis/{group}/v1", () => Answer(ResourceList(group)));
        }
    }

    private static IEnumerable<string> Groups() => Resources.Select(r => r.Kind.Group).Where(g => g.Length > 0).Distinct();

    /// <summary>True when the client takes the aggregated form (kubectl 1.30+ asks for it first).</summary>
    private static bool Aggregated(HttpContext context) =>
        context.Request.Headers.Accept.ToString().Contains("as=APIGroupDiscoveryList", StringComparison.Ordinal)
        && context.Request.Headers.Accept.ToString().Contains("v=v2;", StringComparison.Ordinal);

    private static JsonObject GroupDiscovery(string group) => new()
    {
        ["metadata"] = new JsonObject { ["name"] = group },
        ["versions"] = new JsonArray(new JsonObject
        {
            ["version"] = "v1",
            ["resources"] = new JsonArray([.. Resources.Where(r => r.Kind.Group == group).Select(r => (JsonNode)new JsonObject
            {
                ["resource"] = r.Kind.Plural,
                ["responseKind"] = new JsonObject { ["group"] = group, ["version"] = "v1", ["kind"] = r.Kind.Kind },
                ["scope"] = "Cluster",
                ["singularResource"] = r.Kind.Kind.ToLowerInvariant(),
                ["verbs"] = new JsonArray([.. r.Verbs.Select(v => (JsonNode)v)]),
                ["shortNames"] = new JsonArray([.. r.ShortNames.Select(s => (JsonNode)s)]),
            })]),
            ["freshness"] = "Current",
        }),
    };

    private static JsonObject ResourceList(string group) => new()
    {
        ["kind"] = "APIResourceList",
        ["apiVersion"] = "v1",
        ["groupVersion"] = group.Length == 0 ? "v1" : $"{group}/v1",
        ["resources"] = new JsonArray([.. Resources.Where(r => r.Kind.Group == group).Select(r => (JsonNode)new JsonObject
        {
            ["name"] = r.Kind.Plural,
            ["singularName"] = r.Kind.Kind.ToLowerInvariant(),
            ["namespaced"] = false,
            ["kind"] = r.Kind.Kind,
            ["verbs"] = new JsonArray([.. r.Verbs.Select(v => (JsonNode)v)]),
            ["shortNames"] = new JsonArray([.. r.ShortNames.Select(s => (JsonNode)s)]),
        })]),
    };

    private static IResult Answer(JsonObject body, string contentType = "application/json") => Results.Text(body.ToJsonString(), contentType);
}
