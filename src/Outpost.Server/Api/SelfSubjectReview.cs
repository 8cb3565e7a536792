using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Outpost.Core.Tokens;
using Outpost.Server.Hosting;

namespace Outpost.Server.Api;

/// <summary>
/// "Who am I": POST /apis/authentication.k8s.io/v1/selfsubjectreviews answers with the caller's
/// token and role, as Kubernetes does for `kubectl auth whoami`. The dashboard asks it at sign-in to
/// know whether to show the buttons that change things; it changes nothing, so viewers may ask it.
/// </summary>
public static class SelfSubjectReview
{
    public const string Path = "/apis/authentication.k8s.io/v1/selfsubjectreviews";

    /// <summary>The group every caller of a role is in: outpost:admin or outpost:viewer.</summary>
    public static string GroupOf(string role) => "outpost:" + role;

    public static bool Handles(HttpRequest request) => HttpMethods.IsPost(request.Method) && request.Path.Equals(Path, StringComparison.Ordinal);

    public static void MapSelfSubjectReview(this IEndpointRouteBuilder app) =>
        app.MapPost(Path, (HttpContext context) =>
        {
            var role = context.Items[OutpostServer.RoleKey] as string ?? Roles.Viewer;
            var (id, actor) = context.Items[OutpostServer.ActorKey] is (string i, string a) ? (i, a) : ("", "");
            return ApiEndpoints.Json(new JsonObject
            {
                ["kind"] = "SelfSubjectReview",
                ["apiVersion"] = "authentication.k8s.io/v1",
                ["metadata"] = new JsonObject { ["creationTimestamp"] = null },
                ["status"] = new JsonObject
                {
                    ["userInfo"] = new JsonObject
                    {
                        ["username"] = actor,
                        ["uid"] = id,
                        ["groups"] = new JsonArray(GroupOf(role), "system:authenticated"),
                    },
                },
            }, 201);
        });
}
