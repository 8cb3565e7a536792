using System.Text.Json.Nodes;

namespace Outpost.Core.Api;

/// <summary>The reasons a Kubernetes <c>Status</c> carries; the client keys its messages on them.</summary>
public static class StatusReasons
{
    public const string NotFound = "NotFound";
    public const string AlreadyExists = "AlreadyExists";
    public const string Invalid = "Invalid";
    public const string BadRequest = "BadRequest";
    public const string Unauthorized = "Unauthorized";
    public const string Forbidden = "Forbidden";
    public const string Conflict = "Conflict";
    public const string MethodNotAllowed = "MethodNotAllowed";
    public const string UnsupportedMediaType = "UnsupportedMediaType";
    public const string InternalError = "InternalError";
    public const string ServiceUnavailable = "ServiceUnavailable";
    public const string BadGateway = "BadGateway";
}

/// <summary>Every API error is one of these, with the HTTP code it is sent with.</summary>
public sealed record ApiStatus(int Code, string Reason, string Message, IReadOnlyList<StatusCause>? Causes = null, string? Kind = null, string? Name = null)
{
    public JsonObject ToJson()
    {
        var obj = new JsonObject
        {
            ["kind"] = "Status",
            ["apiVersion"] = "v1",
            ["metadata"] = new JsonObject(),
            ["status"] = "Failure",
            ["message"] = Message,
            ["reason"] = Reason,
            ["code"] = Code,
        };
        if (Causes is { Count: > 0 } || Kind is not null || Name is not null)
        {
            var details = new JsonObject();
            if (Name is not null)
            {
                details["name"] = Name;
            }

            if (Kind is not null)
            {
                details["kind"] = Kind;
            }

            if (Causes is { Count: > 0 })
            {
                details["causes"] = new JsonArray([.. Causes.Select(c => (JsonNode)new JsonObject
                {
                    ["reason"] = c.Reason,
                    ["message"] = c.Message,
                    ["field"] = c.Field,
                })]);
            }

            obj["details"] = details;
        }

        return obj;
    }

    public static ApiStatus NotFound(string kind, string name) =>
        new(404, StatusReasons.NotFound, $"{kind.ToLowerInvariant()} \"{name}\" not found", Kind: kind, Name: name);

    public static ApiStatus Invalid(string kind, string? name, IReadOnlyList<StatusCause> causes, string? prefix = null) =>
        new(422, StatusReasons.Invalid,
            $"{prefix ?? $"{kind} \"{name}\" is invalid"}: {string.Join("; ", causes.Select(c => c.Field.Length == 0 ? c.Message : $"{c.Field}: {c.Message}"))}",
            causes, kind, name);

    public static ApiStatus BadRequest(string message) => new(400, StatusReasons.BadRequest, message);

    public static ApiStatus Unauthorized(string message) => new(401, StatusReasons.Unauthorized, message);
}

/// <summary>One field-level problem inside an Invalid status.</summary>
public sealed record StatusCause(string Field, string Message, string Reason = "FieldValueInvalid");
