using System.Text.Json.Nodes;
using Outpost.Core.Api;
using Outpost.Core.Resources;
using Outpost.Server.Hosting;
using Outpost.Server.Sync;

namespace Outpost.Server.Api;

/// <summary>Renders resources for the API, filling in live fields (a node's state from its lease).</summary>
public sealed class ResourceView(NodeLeases leases, SyncAccounting accounting, TimeProvider time, ServerOptions options)
{
    public JsonObject Render(StoredResource resource)
    {
        ArgumentNullException.ThrowIfNull(resource);
        if (resource.Kind != ResourceKind.Node.Kind)
        {
            return ResourceJson.ToObject(resource);
        }

        var status = resource.StatusJson is null ? [] : JsonNode.Parse(resource.StatusJson)!.AsObject();
        var lease = leases.Get(resource.Name);
        DateTimeOffset? lastHeartbeat = lease?.LastHeartbeat;
        if (lastHeartbeat is null && status["lastHeartbeatTime"] is JsonValue stored && DateTimeOffset.TryParse(stored.ToString(), out var parsed))
        {
            lastHeartbeat = parsed;
        }

        if (accounting.ToJson(resource.Name) is { } sync)
        {
            status["sync"] = sync;
        }

        status["state"] = NodeState.Derive(lease?.Connected == true, lastHeartbeat, time.GetUtcNow(), options.NodeLease);
        if (lastHeartbeat is { } beat)
        {
            status["lastHeartbeatTime"] = ResourceJson.FormatTimestamp(beat);
        }

        return ResourceJson.ToObject(resource, status);
    }
}
