using System.Text.Json;

namespace Outpost.Server.Sync;

/// <summary>One app as a node's last report put it in the node's status.</summary>
public readonly record struct NodeAppReport(string? State, long Generation, long FailedGeneration, string Message);

/// <summary>
/// Reads what readiness and rollouts ask of a node's stored status (its last stored heartbeat
/// time and its apps) in one pass over a pooled document, rather than a tree of nodes per
/// question: they ask it of every node of the fleet, often.
/// </summary>
public static class NodeStatusReader
{
    public static (string? Beat, Dictionary<string, NodeAppReport> Apps) Read(string? statusJson)
    {
        var apps = new Dictionary<string, NodeAppReport>(StringComparer.Ordinal);
        if (statusJson is null)
        {
            return (null, apps);
        }

        using var status = JsonDocument.Parse(statusJson);
        var root = status.RootElement;
        if (root.ValueKind != JsonValueKind.Object)
        {
            return (null, apps);
        }

        var beat = root.TryGetProperty("lastHeartbeatTime", out var at) && at.ValueKind == JsonValueKind.String ? at.GetString() : null;
        if (root.TryGetProperty("apps", out var running) && running.ValueKind == JsonValueKind.Object)
        {
            foreach (var entry in running.EnumerateObject())
            {
                if (entry.Value.ValueKind == JsonValueKind.Object)
                {
                    apps[entry.Name] = new NodeAppReport(String(entry.Value, "state"), Number(entry.Value, "generation"), Number(entry.Value, "failedGeneration"),
                        String(entry.Value, "message") ?? "");
                }
            }
        }

        return (beat, apps);
    }

    /// <summary>A top-level string field of a node's stored status, or null.</summary>
    public static string? ReadString(string? statusJson, string field)
    {
        if (statusJson is null)
        {
            return null;
        }

        using var status = JsonDocument.Parse(statusJson);
        return status.RootElement.ValueKind == JsonValueKind.Object ? String(status.RootElement, field) : null;
    }

    private static string? String(JsonElement entry, string name) =>
        entry.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String ? value.GetString() : null;

    private static long Number(JsonElement entry, string name) =>
        entry.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.Number && value.TryGetInt64(out var number) ? number : 0;
}
