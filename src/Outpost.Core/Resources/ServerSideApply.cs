using System.Text;
using System.Text.Json.Nodes;

namespace Outpost.Core.Resources;

/// <summary>
/// Server-side apply, per field manager: what a manager applies is the whole of what it
/// wants set. The result is a merge patch of its configuration onto the object, plus a null
/// for every field it applied last time and has dropped now, so fields other writers set
/// survive and fields the manager gave up go. Each manager's last configuration is kept in
/// the annotation <c>outpost.dev/applied.MANAGER</c>.
/// </summary>
public static class ServerSideApply
{
    public const string AnnotationPrefix = "outpost.dev/applied.";

    /// <summary>
    /// The merge patch that applies <paramref name="applied"/> for <paramref name="manager"/>
    /// to <paramref name="current"/>; with no current object, the object to create.
    /// </summary>
    public static JsonObject Patch(JsonObject? current, JsonObject applied, string manager)
    {
        ArgumentNullException.ThrowIfNull(applied);
        var key = AnnotationPrefix + AnnotationName(manager);
        var configuration = (JsonObject)applied.DeepClone();
        (configuration["metadata"] as JsonObject)?["annotations"]?.AsObject().Remove(key);
        var previousText = current?["metadata"]?["annotations"]?[key]?.GetValue<string>();
        var patch = (JsonObject)configuration.DeepClone();
        if (previousText is not null && JsonNode.Parse(previousText) is JsonObject previous)
        {
            Drop(previous, patch);
        }

        var metadata = patch["metadata"] as JsonObject ?? [];
        patch["metadata"] = metadata;
        var annotations = metadata["annotations"] as JsonObject ?? [];
        metadata["annotations"] = annotations;
        annotations[key] = configuration.ToJsonString();
        return patch;
    }

    /// <summary>Sets to null (delete, in a merge patch) every field of <paramref name="previous"/> that <paramref name="patch"/> no longer has.</summary>
    private static void Drop(JsonObject previous, JsonObject patch)
    {
        foreach (var (name, value) in previous)
        {
            if (!patch.ContainsKey(name))
            {
                patch[name] = null;
            }
            else if (value is JsonObject before && patch[name] is JsonObject after)
            {
                Drop(before, after);
            }
        }
    }

    /// <summary>A manager's name as an annotation name: at most 63 letters, digits, '-', '_' or '.'.</summary>
    private static string AnnotationName(string manager)
    {
        var name = new StringBuilder();
        foreach (var c in manager)
        {
            name.Append(char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.' ? c : '-');
        }

        var text = name.ToString().Trim('-', '_', '.');
        return text.Length == 0 ? "unknown" : text[..Math.Min(63, text.Length)];
    }
}
