using Outpost.Core.Resources;

namespace Outpost.Core.Sync;

/// <summary>What a node should hold, and how to get there from what it was last sent.</summary>
public static class DesiredStateDiff
{
    /// <summary>The targeted resources (apps, config sets) whose placement selects a node with these labels.</summary>
    public static IReadOnlyList<StoredResource> ForNode(IEnumerable<StoredResource> resources, IReadOnlyDictionary<string, string> nodeLabels)
    {
        ArgumentNullException.ThrowIfNull(resources);
        ArgumentNullException.ThrowIfNull(nodeLabels);
        return [.. resources.Where(r => ResourceKind.Targeted.Any(k => k.Kind == r.Kind) && Targets(r.Spec(), nodeLabels))];
    }

    /// <summary>True when every spec.placement.nodeSelector pair is among the labels (no selector: every node).</summary>
    public static bool Targets(System.Text.Json.Nodes.JsonObject spec, IReadOnlyDictionary<string, string> nodeLabels)
    {
        ArgumentNullException.ThrowIfNull(spec);
        var selector = ResourceJson.ReadMap((spec["placement"] as System.Text.Json.Nodes.JsonObject)?["nodeSelector"]);
        return selector.All(p => nodeLabels.TryGetValue(p.Key, out var v) && v == p.Value);
    }

    /// <summary>
    /// Upserts for what is new or changed since it was sent, deletes for what was sent and no
    /// longer targets the node. Keys are "Kind/name"; values are resource versions.
    /// </summary>
    public static (IReadOnlyList<StoredResource> Upserts, IReadOnlyList<string> Deletes) Compute(
        IReadOnlyDictionary<string, long> sent, IReadOnlyList<StoredResource> desired)
    {
        ArgumentNullException.ThrowIfNull(sent);
        ArgumentNullException.ThrowIfNull(desired);
        var upserts = desired.Where(r => !sent.TryGetValue(Key(r.Kind, r.Name), out var rv) || rv != r.ResourceVersion).ToList();
        var wanted = desired.Select(r => Key(r.Kind, r.Name)).ToHashSet(StringComparer.Ordinal);
        var deletes = sent.Keys.Where(k => !wanted.Contains(k)).Order(StringComparer.Ordinal).ToList();
        return (upserts, deletes);
    }

    public static string Key(string kind, string name) => $"{kind}/{name}";
}
