using System.Text.Json.Nodes;
using Outpost.Core.Sync;

namespace Outpost.Core.Resources;

/// <summary>The typed view of a Bucket's spec, read after validation.</summary>
public sealed record BucketSpec
{
    public BucketDirection Direction { get; init; } = BucketDirection.EdgeLocal;

    public ConflictPolicy ConflictPolicy { get; init; } = ConflictPolicy.Lww;

    public IReadOnlyDictionary<string, string> NodeSelector { get; init; } = StoredResource.EmptyMap;

    /// <summary>Edge writes travel to the cloud.</summary>
    public bool SyncsUp => Direction is BucketDirection.EdgeToCloud or BucketDirection.TwoWay;

    /// <summary>Cloud writes travel to the edge.</summary>
    public bool SyncsDown => Direction is BucketDirection.CloudToEdge or BucketDirection.TwoWay;

    /// <summary>Apps on a node may write it (a cloud-to-edge bucket is read-only at the edge).</summary>
    public bool EdgeWritable => Direction != BucketDirection.CloudToEdge;

    /// <summary>The cloud may write it (API and CLI).</summary>
    public bool CloudWritable => SyncsDown;

    /// <summary>Longest key of a synced bucket, in UTF-8 bytes.</summary>
    public const int MaxKeyBytes = 1024;

    /// <summary>Largest value of a synced bucket, in bytes.</summary>
    public const int MaxValueBytes = 1024 * 1024;

    /// <summary>Why a key or value cannot sync, or null when it can.</summary>
    public static string? KeyOrValueProblem(string key, byte[]? value) => KeyOrValueProblem(key, value?.Length ?? 0);

    public static string? KeyOrValueProblem(string key, int valueLength)
    {
        ArgumentNullException.ThrowIfNull(key);
        var keyBytes = System.Text.Encoding.UTF8.GetByteCount(key);
        return keyBytes == 0 ? "a key must not be empty"
            : keyBytes > MaxKeyBytes ? $"key of {keyBytes} bytes exceeds {MaxKeyBytes}"
            : key.Contains('\n', StringComparison.Ordinal) ? "a key must not contain a newline"
            : valueLength > MaxValueBytes ? $"value of {valueLength} bytes exceeds {MaxValueBytes}"
            : null;
    }

    public static BucketSpec FromJson(JsonNode? spec) => new()
    {
        Direction = ParseDirection((string?)spec?["direction"] ?? "edge-local"),
        ConflictPolicy = ParsePolicy((string?)spec?["conflictPolicy"] ?? "lww"),
        NodeSelector = ResourceJson.ReadMap(spec?["placement"]?["nodeSelector"]),
    };

    public static BucketDirection ParseDirection(string text) => text switch
    {
        "edge-local" => BucketDirection.EdgeLocal,
        "edge-to-cloud" => BucketDirection.EdgeToCloud,
        "cloud-to-edge" => BucketDirection.CloudToEdge,
        "two-way" => BucketDirection.TwoWay,
        _ => throw new FormatException($"unknown bucket direction '{text}'"),
    };

    public static ConflictPolicy ParsePolicy(string text) => text switch
    {
        "lww" => ConflictPolicy.Lww,
        "cloud-wins" => ConflictPolicy.CloudWins,
        "edge-wins" => ConflictPolicy.EdgeWins,
        _ => throw new FormatException($"unknown conflict policy '{text}'"),
    };

    public static string Format(BucketDirection direction) => direction switch
    {
        BucketDirection.EdgeToCloud => "edge-to-cloud",
        BucketDirection.CloudToEdge => "cloud-to-edge",
        BucketDirection.TwoWay => "two-way",
        _ => "edge-local",
    };

    public static string Format(ConflictPolicy policy) => policy switch
    {
        ConflictPolicy.CloudWins => "cloud-wins",
        ConflictPolicy.EdgeWins => "edge-wins",
        _ => "lww",
    };
}
