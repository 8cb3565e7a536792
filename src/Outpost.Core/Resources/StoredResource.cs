using System.Text.Json.Nodes;

namespace Outpost.Core.Resources;

/// <summary>
/// A resource as the store holds it. Spec and status are kept as JSON text so the
/// value stays immutable and the store stays agnostic of each kind's schema.
/// </summary>
public sealed record StoredResource
{
    public required string Kind { get; init; }

    public required string Name { get; init; }

    public required string Uid { get; init; }

    /// <summary>The global revision of the last change to this resource.</summary>
    public required long ResourceVersion { get; init; }

    /// <summary>Counts spec changes; labels or status changes leave it alone.</summary>
    public required long Generation { get; init; }

    public required DateTimeOffset CreationTimestamp { get; init; }

    public IReadOnlyDictionary<string, string> Labels { get; init; } = EmptyMap;

    public IReadOnlyDictionary<string, string> Annotations { get; init; } = EmptyMap;

    public string SpecJson { get; init; } = "{}";

    public string? StatusJson { get; init; }

    internal static readonly IReadOnlyDictionary<string, string> EmptyMap = new Dictionary<string, string>();

    public JsonObject Spec() => JsonNode.Parse(SpecJson)?.AsObject() ?? [];
}
