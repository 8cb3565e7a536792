using System.Globalization;
using System.Text.Json.Nodes;
using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace Outpost.Core.Manifests;

/// <summary>
/// Reads multi-document YAML into JSON objects, typing plain scalars as YAML 1.2's core
/// schema does (so <c>port: 80</c> is a number and <c>name: "80"</c> a string).
/// </summary>
public static class YamlManifestReader
{
    public static IReadOnlyList<ManifestDocument> Read(string text, string source)
    {
        ArgumentNullException.ThrowIfNull(text);
        var stream = new YamlStream();
        try
        {
            stream.Load(new StringReader(text));
        }
        catch (YamlException ex)
        {
            throw new ManifestException($"{source}: invalid YAML at line {ex.Start.Line}, column {ex.Start.Column}: {ex.InnerException?.Message ?? ex.Message}");
        }

        var documents = new List<ManifestDocument>();
        var errors = new List<string>();
        var index = 0;
        foreach (var doc in stream.Documents)
        {
            index++;
            var root = doc.RootNode;
            if (root is YamlScalarNode { Value: null or "" } || root is null)
            {
                continue; // an empty document between separators
            }

            if (root is not YamlMappingNode mapping)
            {
                errors.Add($"{source} (document {index}): expected a mapping with apiVersion, kind, metadata and spec");
                continue;
            }

            documents.Add(new ManifestDocument(source, index, (JsonObject)Convert(mapping)!));
        }

        if (errors.Count > 0)
        {
            throw new ManifestException(errors);
        }

        return documents;
    }

    private static JsonNode? Convert(YamlNode node) => node switch
    {
        YamlMappingNode map => ConvertMap(map),
        YamlSequenceNode seq => new JsonArray([.. seq.Children.Select(Convert)]),
        YamlScalarNode scalar => ConvertScalar(scalar),
        _ => throw new ManifestException($"unsupported YAML node at line {node.Start.Line}"),
    };

    private static JsonObject ConvertMap(YamlMappingNode map)
    {
        var obj = new JsonObject();
        foreach (var (key, value) in map.Children)
        {
            var name = (key as YamlScalarNode)?.Value
                ?? throw new ManifestException($"line {key.Start.Line}: mapping keys must be plain strings");
            if (obj.ContainsKey(name))
            {
                throw new ManifestException($"line {key.Start.Line}: duplicate key '{name}'");
            }

            obj[name] = Convert(value);
        }

        return obj;
    }

    private static JsonValue? ConvertScalar(YamlScalarNode scalar)
    {
        var value = scalar.Value ?? "";
        if (scalar.Style is ScalarStyle.SingleQuoted or ScalarStyle.DoubleQuoted or ScalarStyle.Literal or ScalarStyle.Folded)
        {
            return JsonValue.Create(value);
        }

        switch (value)
        {
            case "" or "~" or "null" or "Null" or "NULL":
                return null;
            case "true" or "True" or "TRUE":
                return JsonValue.Create(true);
            case "false" or "False" or "FALSE":
                return JsonValue.Create(false);
        }

        if (long.TryParse(value, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var l))
        {
            return JsonValue.Create(l);
        }

        if (value.Length > 0 && (char.IsDigit(value[0]) || value[0] is '-' or '+' or '.')
            && double.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out var d) && double.IsFinite(d))
        {
            return JsonValue.Create(d);
        }

        return JsonValue.Create(value);
    }
}
