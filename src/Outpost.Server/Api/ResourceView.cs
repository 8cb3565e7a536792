using System.Text.Json.Nodes;
using Outpost.Core.Api;
using Outpost.Core.Resources;
using Outpost.Server.Hosting;
using Outpost.Server.Sync;

namespace Outpost.Server.Api;

/// <summary>Renders resources for the API, filling in live fields (a node's state from its lease).</summary>
public sealed class ResourceView(FleetPresence leases, SyncAccounting accounting, RolloutController rollouts, TimeProvider time, ServerOptions options, Core.Security.SecretBox secrets)
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

        var state = NodeState.Derive(lease?.Connected == true, lastHeartbeat, time.GetUtcNow(), options.NodeLease);
        status["state"] = state;
        if (lastHeartbeat is { } beat)
        {
            status["lastHeartbeatTime"] = ResourceJson.FormatTimestamp(beat);
        }

        AddKubernetesShape(status, state);
        return ResourceJson.ToObject(resource, status);
    }

    /// <summary>
    /// A node's state as <see cref="Render"/> shows it, without rendering the node: from its
    /// stream, or else from the heartbeat time its stored status holds (<paramref name="storedBeat"/>).
    /// </summary>
    public string NodeStateOf(string node, string? storedBeat) => NodeLivenessOf(node, storedBeat).State;

    /// <summary>A node's state and last heartbeat as <see cref="Render"/> shows them, without rendering the node.</summary>
    public (string State, DateTimeOffset? LastHeartbeat) NodeLivenessOf(string node, string? storedBeat)
    {
        var lease = leases.Get(node);
        DateTimeOffset? lastHeartbeat = lease?.LastHeartbeat;
        if (lastHeartbeat is null && storedBeat is not null && DateTimeOffset.TryParse(storedBeat, out var parsed))
        {
            lastHeartbeat = parsed;
        }

        return (NodeState.Derive(lease?.Connected == true, lastHeartbeat, time.GetUtcNow(), options.NodeLease), lastHeartbeat);
    }

    /// <summary>
    /// A node's state from its stream alone, without reading its stored status: null when no
    /// replica has held a stream of it since this server started. What time changes without a write.
    /// </summary>
    public string? LeaseState(string node) =>
        leases.Get(node) is { } lease ? NodeState.Derive(lease.Connected, lease.LastHeartbeat, time.GetUtcNow(), options.NodeLease) : null;

    /// <summary>
    /// The fields a Kubernetes Node has, next to Outpost's own: a Ready condition from the
    /// lease, nodeInfo, addresses, capacity and allocatable (what kubectl get/describe read).
    /// </summary>
    private static void AddKubernetesShape(JsonObject status, string state)
    {
        var host = status["host"] as JsonObject;
        var beat = status["lastHeartbeatTime"]?.GetValue<string>();
        status["conditions"] = new JsonArray(new JsonObject
        {
            ["type"] = "Ready",
            ["status"] = state switch { NodeState.Ready => "True", NodeState.NotReady => "Unknown", _ => "False" },
            ["reason"] = state switch { NodeState.Ready => "AgentReady", NodeState.NotReady => "AgentNotReady", _ => "AgentOffline" },
            ["message"] = state switch
            {
                NodeState.Ready => "the agent's stream is open and its heartbeats are within the lease",
                NodeState.NotReady => "the agent missed its heartbeats or dropped its stream; the lease has not run out",
                _ => "the agent's lease has expired and its stream is gone",
            },
            ["lastHeartbeatTime"] = beat,
            ["lastTransitionTime"] = beat,
        });
        status["nodeInfo"] = new JsonObject
        {
            ["machineID"] = "",
            ["systemUUID"] = "",
            ["bootID"] = "",
            ["kernelVersion"] = host?["kernelVersion"]?.DeepClone() ?? "",
            ["osImage"] = host?["osImage"]?.DeepClone() ?? "",
            ["containerRuntimeVersion"] = "outpost-wasm://wasmtime",
            ["kubeletVersion"] = status["agentVersion"]?.GetValue<string>() is { Length: > 0 } version ? "v" + version.TrimStart('v') : "",
            ["kubeProxyVersion"] = "",
            ["operatingSystem"] = host?["operatingSystem"]?.DeepClone() ?? "",
            ["architecture"] = host?["architecture"]?.DeepClone() ?? "",
        };
        var addresses = new JsonArray();
        if (host?["internalIP"]?.GetValue<string>() is { Length: > 0 } ip)
        {
            addresses.Add((JsonNode)new JsonObject { ["type"] = "InternalIP", ["address"] = ip });
        }

        if (host?["hostname"]?.GetValue<string>() is { Length: > 0 } hostname)
        {
            addresses.Add((JsonNode)new JsonObject { ["type"] = "Hostname", ["address"] = hostname });
        }

        status["addresses"] = addresses;
        if (host?["cpus"]?.GetValue<int>() is { } cpus && host["memoryBytes"]?.GetValue<long>() is { } memory)
        {
            var capacity = new JsonObject { ["cpu"] = cpus.ToString(System.Globalization.CultureInfo.InvariantCulture), ["memory"] = $"{memory / 1024}Ki" };
            status["capacity"] = capacity;
            status["allocatable"] = capacity.DeepClone();
        }
    }
}
