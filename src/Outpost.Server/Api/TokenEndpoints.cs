using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Outpost.Core.Api;
using Outpost.Core.Manifests;
using Outpost.Core.Resources;
using Outpost.Core.Store;
using Outpost.Core.Tokens;
using Outpost.Server.Security;
using static Outpost.Server.Api.ApiEndpoints;

namespace Outpost.Server.Api;

/// <summary>
/// Tokens: join tokens for agents (with a lifetime, a use count and labels for the nodes that
/// join with them) and API tokens with a role. Listing shows what each is for, never a secret.
/// </summary>
internal static class TokenEndpoints
{
    public static void MapTokens(this IEndpointRouteBuilder app)
    {
        app.MapPost(OutpostPrefix + "/tokens", CreateAsync);
        app.MapGet(OutpostPrefix + "/tokens", ListAsync);
        app.MapDelete(OutpostPrefix + "/tokens/{id}", RevokeAsync);
    }

    private static async Task<IResult> CreateAsync(HttpContext context, IControlPlaneStore store, TimeProvider time, ServerTls tls, CancellationToken ct)
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

        var errors = new List<StatusCause>();
        var known = new[] { "kind", "role", "ttlSeconds", "uses", "labels", "description" };
        errors.AddRange(body.Select(p => p.Key).Where(k => !known.Contains(k)).Select(k => new StatusCause(k, $"unknown field; expected one of: {string.Join(", ", known)}", "FieldValueNotSupported")));
        var kindText = body["kind"] is JsonValue kv && kv.TryGetValue<string>(out var k) ? k : body["kind"] is null ? "join" : null;
        if (kindText is not ("join" or "api"))
        {
            errors.Add(new StatusCause("kind", "expected \"join\" (for agents) or \"api\" (for the REST API)"));
        }

        var role = body["role"] is JsonValue rv && rv.TryGetValue<string>(out var r) ? r : null;
        if (kindText == "api" && (role is null || !Roles.All.Contains(role)))
        {
            errors.Add(new StatusCause("role", $"an API token needs a role: one of {string.Join(", ", Roles.All)}"));
        }
        else if (kindText == "join" && body["role"] is not null)
        {
            errors.Add(new StatusCause("role", "only API tokens have a role"));
        }

        TimeSpan? ttl = null;
        if (body["ttlSeconds"] is { } ttlNode)
        {
            if (ttlNode is not JsonValue ttlValue || !ttlValue.TryGetValue<long>(out var seconds) || seconds <= 0)
            {
                errors.Add(new StatusCause("ttlSeconds", "expected a positive number of seconds"));
            }
            else
            {
                ttl = TimeSpan.FromSeconds(seconds);
            }
        }

        int? uses = null;
        if (body["uses"] is { } usesNode)
        {
            if (kindText != "join" || usesNode is not JsonValue usesValue || !usesValue.TryGetValue<int>(out var n) || n < 1)
            {
                errors.Add(new StatusCause("uses", "a join token's number of joins: a positive integer"));
            }
            else
            {
                uses = n;
            }
        }

        if (body["labels"] is { } labelsNode)
        {
            errors.AddRange(kindText != "join"
                ? [new StatusCause("labels", "only join tokens carry labels for the nodes that join with them")]
                : ManifestValidator.ValidateLabels(labelsNode, "labels").Select(e => new StatusCause(e.Field, e.Message)));
        }

        if (errors.Count > 0)
        {
            return Error(ApiStatus.Invalid("Token", null, errors, "token not created"));
        }

        var now = time.GetUtcNow();
        var kind = kindText == "api" ? TokenKind.Api : TokenKind.Join;
        var issued = TokenCodec.Issue(kind, now, expiresAt: now + ttl, description: (body["description"] as JsonValue)?.ToString(),
            role: role, maxUses: uses, labels: ResourceJson.ReadMap(body["labels"]));
        await store.CreateTokenAsync(issued.Record, ct);
        var item = Describe(issued.Record);
        item["token"] = kind == TokenKind.Join && tls.Authority is not null ? TokenCodec.WithPin(issued.Token, tls.Authority.Trust.Fingerprint) : issued.Token;
        return Json(item, 201);
    }

    private static async Task<IResult> ListAsync(IControlPlaneStore store, CancellationToken ct)
    {
        var tokens = await store.ListTokensAsync(ct);
        return Json(new JsonObject
        {
            ["kind"] = "TokenList",
            ["apiVersion"] = "outpost.dev/v1",
            ["metadata"] = new JsonObject(),
            ["items"] = new JsonArray([.. tokens.Select(Describe)]),
        });
    }

    private static async Task<IResult> RevokeAsync(string id, IControlPlaneStore store, CancellationToken ct) =>
        await store.DeleteTokenAsync(id, ct)
            ? Json(new JsonObject { ["kind"] = "Status", ["apiVersion"] = "v1", ["status"] = "Success", ["details"] = new JsonObject { ["name"] = id, ["kind"] = "tokens" } })
            : Error(ApiStatus.NotFound("Token", id));

    /// <summary>A token as the API shows it: what it is for, never its secret or hash.</summary>
    private static JsonObject Describe(TokenRecord token)
    {
        var item = new JsonObject
        {
            ["kind"] = "Token",
            ["apiVersion"] = "outpost.dev/v1",
            ["metadata"] = new JsonObject { ["name"] = token.Id, ["creationTimestamp"] = ResourceJson.FormatTimestamp(token.CreatedAt) },
            ["type"] = token.Kind.ToString().ToLowerInvariant(),
        };
        if (token.Role is not null)
        {
            item["role"] = token.Role;
        }

        if (token.Subject is not null)
        {
            item["node"] = token.Subject;
        }

        if (token.Kind == TokenKind.Join)
        {
            item["uses"] = token.Uses;
            item["maxUses"] = token.MaxUses;
            item["labels"] = ResourceJson.ToJson(token.Labels);
        }

        item["expiresAt"] = token.ExpiresAt is { } at ? ResourceJson.FormatTimestamp(at) : null;
        item["description"] = token.Description;
        return item;
    }
}
