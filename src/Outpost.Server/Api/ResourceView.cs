using System.Text.Json.Nodes;
using Outpost.Core.Api;
using Outpost.Core.Resources;
using Outpost.Server.Hosting;
using Outpost.Server.Sync;

namespace Outpost.Server.Api;

/// <summary>Renders resources for the API, filling in live fields (a node's state from its lease).</summary>
public sealed class ResourceView(NodeLeases leases, SyncAccounting accounting, RolloutController rollouts, TimeProvider time, ServerOptions options, Core.Security.SecretBox secrets)
{
    /// <summary>
    /// The resource as the API shows it. Secret values are stored sealed and shown as
    /// <c>&lt;redacted&gt;</c>, or opened with <paramref name="reveal"/> (for admins, and for
    /// the nodes a Secret is placed on, over their mutual-TLS stream).
    /// </summary>
    public JsonObject Render(StoredResource resource, bool reveal = false)
    {
        ArgumentNullException.ThrowIfNull(resource);
        if (resource.Kind == ResourceKind.Secret.Kind)
        {
            var secret = ResourceJson.ToObject(resource);
            if (secret["spec"]?["data"] is JsonObject data)
            {
                foreach (var (key, value) in data.ToList())
                {
                    data[key] = reveal ? secrets.Open((string)value!, Core.Security.SecretBox.ContextOf(resource.Name, key)) : Core.Security.SecretBox.Redacted;
                }
            }

            return secret;
        }

        if (resource.Kind == ResourceKind.Application.Kind && rollouts.Current(resource.Name) is { } rollout)
        {
            return ResourceJson.ToObject(resource, new JsonObject { ["rollout"] = rollout.ToJson() });
        }

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
