using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Outpost.Core.Manifests;

namespace Outpost.Core.Resources;

/// <summary>Reads typed spec fields, adding an error that names the field when one is of the wrong type.</summary>
internal static class SpecFields
{
    internal static string? String(JsonNode? node, string field, List<FieldError> errors)
    {
        if (node is null)
        {
            return null;
        }

        if (node is JsonValue v && v.GetValueKind() == JsonValueKind.String)
        {
            return v.GetValue<string>();
        }

        errors.Add(new(field, $"expected a string, got {node.ToJsonString()}"));
        return null;
    }

    internal static TimeSpan? Duration(JsonNode node, string field, List<FieldError> errors)
    {
        if (node is JsonValue v && v.GetValueKind() == JsonValueKind.String && Durations.TryParse(v.GetValue<string>(), out var value))
        {
            return value;
        }

        errors.Add(new(field, $"expected a duration like 30s, 5m or 1h, got {node.ToJsonString()}"));
        return null;
    }

    internal static int? Int(JsonNode? node) =>
        node is JsonValue v && v.GetValueKind() == JsonValueKind.Number
        && int.TryParse(v.ToJsonString(), NumberStyles.None, CultureInfo.InvariantCulture, out var i) ? i : null;

    /// <summary>A number from <paramref name="min"/> to <paramref name="max"/>, or null (with an error) when it is not one.</summary>
    internal static double? Number(JsonNode node, string field, double min, double max, string what, List<FieldError> errors)
    {
        // Whatever the parser stored (a YAML 1 is an integer): read the number as written.
        if (node is JsonValue v && v.GetValueKind() == JsonValueKind.Number
            && double.TryParse(v.ToJsonString(), NumberStyles.Float, CultureInfo.InvariantCulture, out var value) && value >= min && value <= max)
        {
            return value;
        }

        errors.Add(new(field, $"expected {what}, got {node.ToJsonString()}"));
        return null;
    }
}
