using Outpost.Core.Resources;

namespace Outpost.Core.Sync;

/// <summary>What a node should hold, and how to get there from what it was last sent.</summary>
public static class DesiredStateDiff
{
    /// <summary>The resources of a kind that target a node with these labels.</summary>
    public static IReadOnlyList<StoredResource> ForNode(IEnumerable<StoredResource> applications, IReadOnlyDictionary<string, string> nodeLabels)
    {
        ArgumentNullException.ThrowIfNull(applications);
        return [.. applications.Where(a => a.Kind == ResourceKind.Application.Kind
            && ApplicationSpec.FromJson(a.Spec()).Targets(nodeLabels))];
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
