using System.Text.Json.Nodes;

namespace Outpost.Core.Resources;

/// <summary>
/// The typed view of a NetworkService's spec, read after validation: the apps whose Ready
/// instances are its endpoints (by their labels), and the same port, ingress and clients an app's
/// <c>spec.expose</c> gives.
/// </summary>
public sealed record NetworkServiceSpec(IReadOnlyDictionary<string, string> Selector, int Port)
{
    public string? Ingress { get; init; }

    /// <summary>Nodes whose own programs may call it, by their labels; null admits none that way.</summary>
    public IReadOnlyDictionary<string, string>? Clients { get; init; }

    public static NetworkServiceSpec FromJson(JsonObject spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        return new NetworkServiceSpec(ResourceJson.ReadMap(spec["selector"]), spec["port"] is JsonValue port && port.TryGetValue<int>(out var p) ? p : ExposeSpec.DefaultPort)
        {
            Ingress = (spec["ingress"] as JsonObject)?["path"] is JsonValue path && path.TryGetValue<string>(out var i) ? i : null,
            Clients = (spec["clients"] as JsonObject)?["nodeSelector"] is { } clients ? ResourceJson.ReadMap(clients) : null,
        };
    }

    /// <summary>True when the app's labels carry every selector pair.</summary>
    public bool Selects(IReadOnlyDictionary<string, string> appLabels)
    {
        ArgumentNullException.ThrowIfNull(appLabels);
        return Selector.Count > 0 && Selector.All(p => appLabels.TryGetValue(p.Key, out var v) && v == p.Value);
    }
}
