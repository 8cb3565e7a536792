using System.Text.Json.Nodes;

namespace Outpost.Core.Resources;

/// <summary>JSON Merge Patch (RFC 7386), as <c>application/merge-patch+json</c> means it.</summary>
public static class MergePatch
{
    public static JsonNode? Apply(JsonNode? target, JsonNode? patch)
    {
        if (patch is not JsonObject patchObject)
        {
            return patch?.DeepClone();
        }

        var result = target is JsonObject targetObject ? (JsonObject)targetObject.DeepClone() : [];
        foreach (var (key, value) in patchObject)
        {
            if (value is null)
            {
                result.Remove(key);
            }
            else
            {
                var merged = Apply(result[key], value);
                result.Remove(key);
                result[key] = merged;
            }
        }

        return result;
    }
}
