using System.Globalization;
using System.Text.Json.Nodes;

namespace Outpost.Core.Resources;

/// <summary>Renders stored resources in the Kubernetes object shape the API and the CLI share.</summary>
public static class ResourceJson
{
    public static JsonObject ToObject(StoredResource resource, JsonObject? statusOverride = null)
    {
        ArgumentNullException.ThrowIfNull(resource);
        var kind = ResourceKind.FindByKind(resource.Kind)
            ?? throw new ArgumentException($"unknown kind '{resource.Kind}'", nameof(resource));
        var metadata = new JsonObject
        {
            ["name"] = resource.Name,
            ["uid"] = resource.Uid,
            ["resourceVersion"] = resource.ResourceVersion.ToString(CultureInfo.InvariantCulture),
            ["generation"] = resource.Generation,
            ["creationTimestamp"] = FormatTimestamp(resource.CreationTimestamp),
            ["labels"] = ToJson(resource.Labels),
        };
        if (resource.Annotations.Count > 0)
        {
            metadata["annotations"] = ToJson(resource.Annotations);
        }

        var rendered = new JsonObject
        {
            ["apiVersion"] = kind.ApiVersion,
            ["kind"] = kind.Kind,
            ["metadata"] = metadata,
        };
        if (kind.SpecAtTop)
        {
            foreach (var (field, value) in resource.Spec().ToList())
            {
                rendered[field] = value?.DeepClone();
            }

            return rendered;
        }

        rendered["spec"] = resource.Spec();
        rendered["status"] = statusOverride ?? (resource.StatusJson is null ? new JsonObject() : JsonNode.Parse(resource.StatusJson));
        return rendered;
    }

    public static JsonObject ToList(ResourceKind kind, long revision, IEnumerable<JsonObject> items)
    {
        ArgumentNullException.ThrowIfNull(kind);
        return new JsonObject
        {
            ["kind"] = kind.ListKind,
            ["apiVersion"] = kind.ApiVersion,
            ["metadata"] = new JsonObject { ["resourceVersion"] = revision.ToString(CultureInfo.InvariantCulture) },
            ["items"] = new JsonArray([.. items]),
        };
    }

    public static string FormatTimestamp(DateTimeOffset value) =>
        value.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture);

    public static JsonObject ToJson(IReadOnlyDictionary<string, string> map)
    {
        ArgumentNullException.ThrowIfNull(map);
        var result = new JsonObject();
        foreach (var (key, value) in map.OrderBy(p => p.Key, StringComparer.Ordinal))
        {
            result[key] = value;
        }

        return result;
    }

    /// <summary>Reads a string map; a caller has validated the shape already.</summary>
    public static Dictionary<string, string> ReadMap(JsonNode? node)
    {
        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        if (node is JsonObject obj)
        {
            foreach (var (key, value) in obj)
            {
                if (value is JsonValue v && v.TryGetValue<string>(out var s))
                {
                    result[key] = s;
                }
            }
        }

        return result;
    }
}
