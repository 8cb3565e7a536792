using System.Text.Json.Nodes;

namespace Outpost.Core.Resources;

/// <summary>One spelling per JSON value (object keys sorted), so equal specs compare equal as text.</summary>
public static class JsonCanonical
{
    public static string Serialize(JsonNode? node) => Normalize(node)?.ToJsonString() ?? "null";

    public static JsonNode? Normalize(JsonNode? node) => node switch
    {
        JsonObject obj => new JsonObject(obj.OrderBy(p => p.Key, StringComparer.Ordinal)
            .Select(p => KeyValuePair.Create(p.Key, Normalize(p.Value)))),
        JsonArray arr => new JsonArray([.. arr.Select(Normalize)]),
        null => null,
        _ => node.DeepClone(),
    };
}
