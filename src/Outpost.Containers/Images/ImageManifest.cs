using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.Json.Nodes;
using Outpost.Core.Resources;

namespace Outpost.Containers.Images;

/// <summary>The media types Outpost reads: OCI's and their Docker schema 2 equivalents.</summary>
public static class MediaTypes
{
    public const string OciManifest = "application/vnd.oci.image.manifest.v1+json";
    public const string OciIndex = "application/vnd.oci.image.index.v1+json";
    public const string OciConfig = "application/vnd.oci.image.config.v1+json";
    public const string OciLayer = "application/vnd.oci.image.layer.v1.tar";
    public const string OciLayerGzip = "application/vnd.oci.image.layer.v1.tar+gzip";
    public const string DockerManifest = "application/vnd.docker.distribution.manifest.v2+json";
    public const string DockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json";
    public const string DockerConfig = "application/vnd.docker.container.image.v1+json";
    public const string DockerLayerGzip = "application/vnd.docker.image.rootfs.diff.tar.gzip";

    public static bool IsManifest(string? type) => type is OciManifest or DockerManifest;

    public static bool IsIndex(string? type) => type is OciIndex or DockerManifestList;

    /// <summary>How a layer of this type is compressed, or null if Outpost cannot unpack it.</summary>
    public static LayerCompression? Compression(string type) => type switch
    {
        OciLayer or "application/vnd.oci.image.layer.nondistributable.v1.tar" => LayerCompression.None,
        OciLayerGzip or DockerLayerGzip or "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            or "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => LayerCompression.Gzip,
        _ => null,
    };
}

public enum LayerCompression
{
    None,
    Gzip,
}

/// <summary>A content descriptor: what a manifest says about one blob.</summary>
public sealed record Descriptor(string MediaType, string Digest, long Size, string? Architecture = null, string? Os = null, string? Variant = null);

/// <summary>An image manifest or index, parsed and checked; anything malformed is an <see cref="ImageException"/> naming what.</summary>
public sealed record ImageManifest(string MediaType, Descriptor? Config, IReadOnlyList<Descriptor> Layers, IReadOnlyList<Descriptor> Manifests)
{
    public bool IsIndex => MediaTypes.IsIndex(MediaType);

    /// <summary>Parses a manifest's bytes; <paramref name="declaredType"/> is the Content-Type it came with, if any.</summary>
    public static ImageManifest Parse(ReadOnlySpan<byte> json, string? declaredType = null)
    {
        JsonObject root;
        try
        {
            root = JsonNode.Parse(json) as JsonObject ?? throw new ImageException("the manifest is not a JSON object");
        }
        catch (JsonException e)
        {
            throw new ImageException($"the manifest is not valid JSON: {e.Message}");
        }

        var type = Str(root["mediaType"]) ?? declaredType;
        if (type is null or "application/json" or "application/octet-stream")
        {
            // OCI lets mediaType be absent: tell a manifest from an index by what it holds.
            type = root.ContainsKey("manifests") ? MediaTypes.OciIndex : root.ContainsKey("layers") ? MediaTypes.OciManifest : type;
        }

        if (type == "application/vnd.docker.distribution.manifest.v1+json" || type == "application/vnd.docker.distribution.manifest.v1+prettyjws")
        {
            throw new ImageException($"unsupported manifest media type '{type}': Docker schema 1 is deprecated; push the image again with a current tool");
        }

        if (MediaTypes.IsIndex(type))
        {
            var manifests = (root["manifests"] as JsonArray ?? throw new ImageException("the index has no 'manifests' list"))
                .Select((m, i) => ReadDescriptor(m, $"manifests[{i}]")).ToArray();
            return new ImageManifest(type!, null, [], manifests);
        }

        if (!MediaTypes.IsManifest(type))
        {
            throw new ImageException($"unsupported manifest media type '{type ?? "(none)"}'; expected {MediaTypes.OciManifest}, {MediaTypes.DockerManifest} or an index");
        }

        var config = ReadDescriptor(root["config"], "config");
        var layers = (root["layers"] as JsonArray ?? throw new ImageException("the manifest has no 'layers' list"))
            .Select((l, i) => ReadDescriptor(l, $"layers[{i}]")).ToArray();
        foreach (var layer in layers)
        {
            if (MediaTypes.Compression(layer.MediaType) is null)
            {
                throw new ImageException($"layer {layer.Digest} has unsupported media type '{layer.MediaType}' (Outpost unpacks tar and tar+gzip layers)");
            }
        }

        return new ImageManifest(type!, config, layers, []);
    }

    /// <summary>From an index, the manifest for this machine's architecture on Linux.</summary>
    public Descriptor SelectPlatform(string architecture)
    {
        var match = Manifests.FirstOrDefault(m => m.Os is null or "linux" && m.Architecture == architecture && MediaTypes.IsManifest(m.MediaType))
            ?? throw new ImageException($"the image has no manifest for linux/{architecture} (it has: {string.Join(", ", Manifests.Select(m => $"{m.Os ?? "?"}/{m.Architecture ?? "?"}"))})");
        return match;
    }

    /// <summary>This machine's architecture as OCI names it.</summary>
    public static string NodeArchitecture => RuntimeInformation.OSArchitecture switch
    {
        Architecture.X64 => "amd64",
        Architecture.Arm64 => "arm64",
        Architecture.Arm => "arm",
        Architecture.X86 => "386",
        var other => other.ToString().ToLowerInvariant(),
    };

    private static Descriptor ReadDescriptor(JsonNode? node, string where)
    {
        if (node is not JsonObject o)
        {
            throw new ImageException($"{where} is not a descriptor object");
        }

        var digest = Str(o["digest"]);
        if (!Digest.IsValid(digest))
        {
            throw new ImageException($"{where} has digest '{digest ?? "(none)"}'; expected sha256:<64 lowercase hex>");
        }

        var size = o["size"] is JsonValue v && v.TryGetValue<long>(out var s) && s >= 0 ? s
            : throw new ImageException($"{where} has no valid 'size'");
        var platform = o["platform"] as JsonObject;
        return new Descriptor(Str(o["mediaType"]) ?? "", digest!, size, Str(platform?["architecture"]), Str(platform?["os"]), Str(platform?["variant"]));
    }

    private static string? Str(JsonNode? node) => node is JsonValue v && v.TryGetValue<string>(out var s) ? s : null;
}

/// <summary>What an image's config says about running it.</summary>
public sealed record ImageConfig(string Architecture, string Os, IReadOnlyList<string> Entrypoint, IReadOnlyList<string> Cmd,
    IReadOnlyList<string> Env, string WorkingDir, string User, IReadOnlyList<string> DiffIds)
{
    public static ImageConfig Parse(ReadOnlySpan<byte> json)
    {
        JsonObject root;
        try
        {
            root = JsonNode.Parse(json) as JsonObject ?? throw new ImageException("the image config is not a JSON object");
        }
        catch (JsonException e)
        {
            throw new ImageException($"the image config is not valid JSON: {e.Message}");
        }

        var config = root["config"] as JsonObject;
        return new ImageConfig(
            Str(root["architecture"]) ?? "",
            Str(root["os"]) ?? "",
            List(config?[nameof(Entrypoint)]),
            List(config?[nameof(Cmd)]),
            List(config?[nameof(Env)]),
            Str(config?[nameof(WorkingDir)]) is { Length: > 0 } dir ? dir : "/",
            Str(config?[nameof(User)]) ?? "",
            List((root["rootfs"] as JsonObject)?["diff_ids"]));
    }

    private static string? Str(JsonNode? node) => node is JsonValue v && v.TryGetValue<string>(out var s) ? s : null;

    private static string[] List(JsonNode? node) => node is JsonArray a ? [.. a.Select(Str).OfType<string>()] : [];
}

/// <summary>An image, manifest or layer Outpost will not use, with the reason.</summary>
public sealed class ImageException : Exception
{
    public ImageException(string message)
        : base(message)
    {
    }

    public ImageException(string message, Exception inner)
        : base(message, inner)
    {
    }

    public ImageException()
    {
    }
}
