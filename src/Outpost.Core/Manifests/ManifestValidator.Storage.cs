using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Outpost.Core.Resources;

namespace Outpost.Core.Manifests;

/// <summary>What an app brings besides its module: read-only files (spec.files), writable volumes on its nodes (spec.volumes) and ONNX models (spec.models).</summary>
public static partial class ManifestValidator
{
    /// <summary>The capability that grants WASI-NN, which models need.</summary>
    public const string Nn = "nn";

    [System.Text.RegularExpressions.GeneratedRegex("^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    private static partial System.Text.RegularExpressions.Regex ModelName();

    /// <summary>The most file mounts, volumes and models one app may have, each.</summary>
    public const int MaxMounts = 16;

    private static readonly string[] VolumeFields = ["name", "mountPath", "sizeLimit"];
    private static readonly string[] FilesFields = ["path", "digest", "mountPath"];
    private static readonly string[] StorageFields = ["files", "volumes", "models"];
    private static readonly string[] ModelFields = ["name", "path", "digest"];

    private static void ValidateStorage(JsonObject spec, bool container, bool allowModulePath, List<FieldError> errors)
    {
        if (container)
        {
            foreach (var field in StorageFields.Where(spec.ContainsKey))
            {
                errors.Add(new($"spec.{field}", field == "models"
                    ? "spec.models are loaded through WASI-NN by Wasm apps; a container app keeps its models in its image"
                    : $"spec.{field} mounts directories into Wasm apps; a container app keeps its files in its image"));
            }

            return;
        }

        var mountPaths = new Dictionary<string, string>(StringComparer.Ordinal);
        if (spec["files"] is { } filesNode && List(filesNode, "spec.files", errors) is { } files)
        {
            for (var i = 0; i < files.Count; i++)
            {
                var field = $"spec.files[{i}]";
                if (files[i] is not JsonObject entry)
                {
                    errors.Add(new(field, $"expected an object with path (or digest) and mountPath, got {Describe(files[i])}"));
                    continue;
                }

                UnknownFields(entry, field, FilesFields, errors);
                MountPath(entry, field, mountPaths, errors);
                PathOrDigest(entry, field, "a local directory or .tar archive", allowModulePath, errors);
            }
        }

        if (spec["models"] is { } modelsNode && List(modelsNode, "spec.models", errors) is { } models)
        {
            var names = new HashSet<string>(StringComparer.Ordinal);
            for (var i = 0; i < models.Count; i++)
            {
                var field = $"spec.models[{i}]";
                if (models[i] is not JsonObject entry)
                {
                    errors.Add(new(field, $"expected an object with name and path (or digest), got {Describe(models[i])}"));
                    continue;
                }

                UnknownFields(entry, field, ModelFields, errors);
                if (entry["name"] is not { } nameNode)
                {
                    errors.Add(new($"{field}.name", "required field is missing: the name the app loads the model by (load_by_name)"));
                }
                else if (AsString(nameNode, $"{field}.name", errors) is { } name)
                {
                    if (!ModelName().IsMatch(name))
                    {
                        errors.Add(new($"{field}.name", $"'{Clip(name)}' is not a model name: use at most 64 letters, digits, '.', '_' and '-', starting with a letter or digit"));
                    }
                    else if (!names.Add(name))
                    {
                        errors.Add(new($"{field}.name", $"model '{name}' is declared twice"));
                    }
                }

                PathOrDigest(entry, field, "a local .onnx file", allowModulePath, errors);
            }

            var capabilities = (spec["capabilities"] as JsonArray)?.Select(c => (c as JsonValue)?.ToString()) ?? [];
            if (models.Count > 0 && !capabilities.Contains(Nn))
            {
                errors.Add(new("spec.models", $"models are loaded through WASI-NN: add capability '{Nn}' to spec.capabilities"));
            }
        }

        if (spec["volumes"] is { } volumesNode && List(volumesNode, "spec.volumes", errors) is { } volumes)
        {
            var names = new HashSet<string>(StringComparer.Ordinal);
            for (var i = 0; i < volumes.Count; i++)
            {
                var field = $"spec.volumes[{i}]";
                if (volumes[i] is not JsonObject entry)
                {
                    errors.Add(new(field, $"expected an object with name, mountPath and sizeLimit, got {Describe(volumes[i])}"));
                    continue;
                }

                UnknownFields(entry, field, VolumeFields, errors);
                MountPath(entry, field, mountPaths, errors);
                if (entry["name"] is not { } nameNode)
                {
                    errors.Add(new($"{field}.name", "required field is missing: the volume's name"));
                }
                else if (AsString(nameNode, $"{field}.name", errors) is { } name)
                {
                    if (!IsDnsLabel(name))
                    {
                        errors.Add(new($"{field}.name", $"'{name}' is not a volume name: use at most 63 lowercase letters, digits and '-'"));
                    }
                    else if (!names.Add(name))
                    {
                        errors.Add(new($"{field}.name", $"volume '{name}' is declared twice"));
                    }
                }

                if (entry["sizeLimit"] is { } sizeNode && !ByteQuantity.TryParse(sizeNode, out _))
                {
                    errors.Add(new($"{field}.sizeLimit", $"expected a size such as 64Mi, 1Gi or a number of bytes (at most 1Ti), got {Describe(sizeNode)}"));
                }
            }
        }
    }

    /// <summary>Content given by a local path (which only `outpost apply -f` can read and upload) or by the digest of what is on the server.</summary>
    private static void PathOrDigest(JsonObject entry, string field, string pathMeaning, bool allowPath, List<FieldError> errors)
    {
        var hasPath = entry["path"] is not null;
        var hasDigest = entry["digest"] is not null;
        if (hasPath == hasDigest)
        {
            errors.Add(new(field, hasPath ? "give either 'path' or 'digest', not both" : $"required: 'path' ({pathMeaning}) or 'digest' (sha256:...)"));
        }
        else if (hasPath && AsString(entry["path"], $"{field}.path", errors) is { } path && !allowPath)
        {
            errors.Add(new($"{field}.path", $"the server cannot read the local path '{path}': use `outpost apply -f`, which uploads it"));
        }
        else if (hasDigest && AsString(entry["digest"], $"{field}.digest", errors) is { } digest && !Digest.IsValid(digest))
        {
            errors.Add(new($"{field}.digest", $"'{digest}' is not a digest: expected 'sha256:' followed by 64 lowercase hex digits"));
        }
    }

    private static JsonArray? List(JsonNode node, string field, List<FieldError> errors)
    {
        if (node is not JsonArray list)
        {
            errors.Add(new(field, $"expected a list, got {Describe(node)}"));
            return null;
        }

        if (list.Count > MaxMounts)
        {
            errors.Add(new(field, $"at most {MaxMounts} entries, got {list.Count}"));
        }

        return list;
    }

    /// <summary>An absolute guest path, without "." or ".." parts, used once among the app's files and volumes.</summary>
    private static void MountPath(JsonObject entry, string field, Dictionary<string, string> seen, List<FieldError> errors)
    {
        if (entry["mountPath"] is not { } node)
        {
            errors.Add(new($"{field}.mountPath", "required field is missing: where the guest sees it (an absolute path such as /data)"));
            return;
        }

        if (AsString(node, $"{field}.mountPath", errors) is not { } path)
        {
            return;
        }

        var parts = path.Split('/');
        if (!path.StartsWith('/') || path.Length > 256 || path.Contains('\0', StringComparison.Ordinal) || parts.Skip(1).Any(p => p is "." or ".." || (p.Length == 0 && path != "/")))
        {
            errors.Add(new($"{field}.mountPath", $"'{Clip(path)}' is not a mount path: expected an absolute path such as /data, without '.', '..' or empty parts"));
        }
        else if (!seen.TryAdd(path, field))
        {
            errors.Add(new($"{field}.mountPath", $"{path} is already mounted by {seen[path]}"));
        }
    }
}

/// <summary>Sizes as Kubernetes writes them: a number of bytes, or a number with Ki, Mi, Gi, Ti (or k, M, G, T).</summary>
public static class ByteQuantity
{
    public const long Max = 1L << 40;

    public static bool TryParse(JsonNode? node, out long bytes)
    {
        bytes = 0;
        return node is JsonValue value && (value.GetValueKind() == JsonValueKind.Number
            ? long.TryParse(value.ToJsonString(), NumberStyles.None, CultureInfo.InvariantCulture, out bytes) && bytes is > 0 and <= Max
            : value.GetValueKind() == JsonValueKind.String && TryParse(value.GetValue<string>(), out bytes));
    }

    public static bool TryParse(string text, out long bytes)
    {
        bytes = 0;
        ArgumentNullException.ThrowIfNull(text);
        var (suffix, factor) = text switch
        {
            _ when text.EndsWith("Ki", StringComparison.Ordinal) => (2, 1L << 10),
            _ when text.EndsWith("Mi", StringComparison.Ordinal) => (2, 1L << 20),
            _ when text.EndsWith("Gi", StringComparison.Ordinal) => (2, 1L << 30),
            _ when text.EndsWith("Ti", StringComparison.Ordinal) => (2, 1L << 40),
            _ when text.EndsWith('k') => (1, 1_000L),
            _ when text.EndsWith('M') => (1, 1_000_000L),
            _ when text.EndsWith('G') => (1, 1_000_000_000L),
            _ when text.EndsWith('T') => (1, 1_000_000_000_000L),
            _ => (0, 1L),
        };
        if (!long.TryParse(text.AsSpan(0, text.Length - suffix), NumberStyles.None, CultureInfo.InvariantCulture, out var number) || number <= 0 || number > Max / factor)
        {
            return false;
        }

        bytes = number * factor;
        return bytes <= Max;
    }
}
