using System.Text.Json.Nodes;

namespace Outpost.Core.Resources;

/// <summary>
/// What a revision changed against the one before it, as spec paths (env.GREETING, module,
/// rollout.steps): the change cause `rollout history` shows, since every revision of an app
/// whose module stayed the same shows the same digest.
/// </summary>
public static class SpecChanges
{
    /// <summary>The paths whose values differ, in order; a map is followed into its keys, anything else compared whole.</summary>
    public static IReadOnlyList<string> Between(JsonObject older, JsonObject newer)
    {
        ArgumentNullException.ThrowIfNull(older);
        ArgumentNullException.ThrowIfNull(newer);
        var changed = new List<string>();
        Walk(older, newer, "", changed);
        return changed;
    }

    private static void Walk(JsonObject older, JsonObject newer, string prefix, List<string> changed)
    {
        foreach (var key in older.Select(p => p.Key).Union(newer.Select(p => p.Key), StringComparer.Ordinal).Order(StringComparer.Ordinal))
        {
            var path = prefix.Length == 0 ? key : $"{prefix}.{key}";
            var (a, b) = (older[key], newer[key]);
            if (key != "module" && a is JsonObject ao && b is JsonObject bo)
            {
                Walk(ao, bo, path, changed); // a module is one thing: its digest or path changed
            }
            else if (!JsonNode.DeepEquals(a, b))
            {
                changed.Add(path);
            }
        }
    }
}
