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
        var placed = new List<StoredResource>();
        foreach (var resource in resources)
        {
            if (IsTargeted(resource.Kind) && Targets(resource, nodeLabels))
            {
                placed.Add(resource);
            }
        }

        return placed;
    }

    /// <summary>
    /// True when the resource's spec.placement.nodeSelector is among the labels. The selector is
    /// read from the spec once per resource read (kept with the instance), not once per node: a
    /// change sent to 10,000 nodes parsed each placeable resource's spec 10,000 times.
    /// </summary>
    public static bool Targets(StoredResource resource, IReadOnlyDictionary<string, string> nodeLabels)
    {
        ArgumentNullException.ThrowIfNull(resource);
        ArgumentNullException.ThrowIfNull(nodeLabels);
        foreach (var (key, value) in s_selectors.GetValue(resource, static r => SelectorOf(r.Spec())))
        {
            if (!nodeLabels.TryGetValue(key, out var label) || label != value)
            {
                return false;
            }
        }

        return true;
    }

    private static readonly System.Runtime.CompilerServices.ConditionalWeakTable<StoredResource, Dictionary<string, string>> s_selectors = new();

    private static bool IsTargeted(string kind)
    {
        foreach (var targeted in ResourceKind.Targeted)
        {
            if (targeted.Kind == kind)
            {
                return true;
            }
        }

        return false;
    }

    private static Dictionary<string, string> SelectorOf(System.Text.Json.Nodes.JsonObject spec) =>
        ResourceJson.ReadMap((spec["placement"] as System.Text.Json.Nodes.JsonObject)?["nodeSelector"]);

    /// <summary>True when every spec.placement.nodeSelector pair is among the labels (no selector: every node).</summary>
    public static bool Targets(System.Text.Json.Nodes.JsonObject spec, IReadOnlyDictionary<string, string> nodeLabels)
    {
        ArgumentNullException.ThrowIfNull(spec);
        return SelectorOf(spec).All(p => nodeLabels.TryGetValue(p.Key, out var v) && v == p.Value);
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
