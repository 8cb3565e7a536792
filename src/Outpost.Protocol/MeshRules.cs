namespace Outpost.Protocol;

/// <summary>The mesh's admission rule, in the words the server and the nodes all use when they refuse.</summary>
public static class MeshRules
{
    /// <summary>Why node <paramref name="node"/> may not open wires to <paramref name="service"/>.</summary>
    public static string NotAllowed(string node, string service) =>
        $"node {node} may not open wires to service '{service}': no app placed on it calls it (capability http-out: [{service}.mesh]), and the service's clients.nodeSelector does not admit it";

    /// <summary>True when the registry a node holds lets <paramref name="caller"/> open wires to <paramref name="service"/>, an endpoint of which is on that node.</summary>
    public static bool Admits(MeshUpdate registry, string service, string caller)
    {
        ArgumentNullException.ThrowIfNull(registry);
        return registry.Clients.TryGetValue(service, out var clients) && clients.Names.Contains(caller);
    }
}
