using System.Globalization;
using System.Text.Json.Nodes;
using Outpost.Core.Api;
using Outpost.Core.Resources;

namespace Outpost.Server.Api;

/// <summary>
/// Server-side printing for kubectl: when a GET asks for <c>as=Table</c>, lists and single
/// objects come back as a meta.k8s.io/v1 Table whose cells are already what kubectl prints
/// (AGE rendered as kubectl renders it), with priority-1 columns for <c>-o wide</c> and
/// each row's object as PartialObjectMetadata (for <c>--show-labels</c>).
/// </summary>
public static class KubeTable
{
    public const string ContentType = "application/json;as=Table;v=v1;g=meta.k8s.io";

    private sealed record Column(string Name, string Type, string Description, int Priority, Func<JsonObject, DateTimeOffset, JsonNode?> Cell);

    /// <summary>True when the client asked for a Table (kubectl get does).</summary>
    public static bool Wanted(string? accept) => accept is not null && accept.Contains("as=Table", StringComparison.Ordinal);

    /// <summary>A Table of the objects; <paramref name="ready"/> gives an app's READY cell (nodes Ready on its revision/targeted).</summary>
    public static JsonObject Build(ResourceKind kind, IEnumerable<JsonObject> items, long revision, DateTimeOffset now, Func<JsonObject, string>? ready = null)
    {
        ArgumentNullException.ThrowIfNull(kind);
        var columns = ColumnsOf(kind, ready ?? (_ => "-"));
        return new JsonObject
        {
            ["kind"] = "Table",
            ["apiVersion"] = "meta.k8s.io/v1",
            ["metadata"] = new JsonObject { ["resourceVersion"] = revision.ToString(CultureInfo.InvariantCulture) },
            ["columnDefinitions"] = new JsonArray([.. columns.Select(c => (JsonNode)new JsonObject
            {
                ["name"] = c.Name,
                ["type"] = c.Type,
                ["format"] = c.Name == "Name" ? "name" : "",
                ["description"] = c.Description,
                ["priority"] = c.Priority,
            })]),
            ["rows"] = new JsonArray([.. items.Select(item => (JsonNode)new JsonObject
            {
                ["cells"] = new JsonArray([.. columns.Select(c => c.Cell(item, now))]),
                ["object"] = new JsonObject
                {
                    ["kind"] = "PartialObjectMetadata",
                    ["apiVersion"] = "meta.k8s.io/v1",
                    ["metadata"] = item["metadata"]?.DeepClone(),
                },
            })]),
        };
    }

    private static List<Column> ColumnsOf(ResourceKind kind, Func<JsonObject, string> ready)
    {
        var name = new Column("Name", "string", "Name must be unique within a kind.", 0, (o, _) => Str(o["metadata"]?["name"]));
        var age = new Column("Age", "string", "Time since the object was created.", 0, (o, now) => Age(o, now));
        if (kind == ResourceKind.Node)
        {
            return
            [
                name,
                new("Status", "string", "Ready while the node's stream is open and its heartbeats within the lease.", 0, (o, _) => Str(o["status"]?["state"])),
                new("Roles", "string", "The node's roles (edge nodes have none).", 0, (_, _) => "<none>"),
                age,
                new("Version", "string", "The agent's version.", 0, (o, _) => Str(o["status"]?["nodeInfo"]?["kubeletVersion"])),
                new("Internal-IP", "string", "The node's address as its agent reported it.", 1, (o, _) => Address(o, "InternalIP")),
                new("OS-Image", "string", "The node's operating system.", 1, (o, _) => Str(o["status"]?["nodeInfo"]?["osImage"])),
                new("Kernel-Version", "string", "The node's kernel.", 1, (o, _) => Str(o["status"]?["nodeInfo"]?["kernelVersion"])),
                new("Container-Runtime", "string", "What runs the node's apps.", 1, (o, _) => Str(o["status"]?["nodeInfo"]?["containerRuntimeVersion"])),
                // What the dashboard sorts and filters the fleet by; a watch does not send a row for these alone (KubeWatch).
                new("Site", "string", "The node's site label.", 1, (o, _) => Str(o["metadata"]?["labels"]?["site"]) is { Length: > 0 } site ? site : "<none>"),
                new("CPU", "number", "The node's CPU in use, as a share of all its cores (0 to 1).", 1, (o, _) => Usage(o, "cpuRatio")),
                new("Memory", "number", "The node's memory in use, as a share of its total (0 to 1).", 1, (o, _) => Share(o, "memoryUsedBytes", "memoryTotalBytes")),
                new("Disk", "number", "The data dir's file system in use, as a share of its size (0 to 1).", 1, (o, _) => Share(o, "diskUsedBytes", "diskTotalBytes")),
                new("Last-Heartbeat", "date", "When the agent last sent a heartbeat.", 1, (o, _) => Str(o["status"]?["lastHeartbeatTime"]) is { Length: > 0 } beat ? beat : "<none>"),
            ];
        }

        if (kind == ResourceKind.Application)
        {
            return
            [
                name,
                new("Revision", "integer", "The app's current revision (its generation).", 0, (o, _) => (long?)o["metadata"]?["generation"] ?? 0),
                new("Ready", "string", "Nodes serving the current revision Ready, of the nodes it targets.", 0, (o, _) => ready(o)),
                new("Rollout", "string", "The phase of the current revision's rollout.", 0, (o, _) => Str(o["status"]?["rollout"]?["phase"]) is { Length: > 0 } p ? p : "-"),
                new("Type", "string", "What runs: a core Wasm module, a Wasm component, or a container.", 0, (o, _) => ModuleKind(o)),
                age,
                new("World", "string", "The world a Wasm component targets (wasi:http/proxy, wasi:cli/command); a core module's is wasi_snapshot_preview1.", 1, (o, _) => Str(o["spec"]?["module"]?["world"]) is { Length: > 0 } w ? w : "-"),
                new("Route", "string", "The HTTP route the app serves.", 1, (o, _) => Str(o["spec"]?["triggers"]?["http"]?["route"])),
                new("Module", "string", "The module's digest.", 1, (o, _) => Str(o["spec"]?["module"]?["digest"])),
            ];
        }

        if (kind == ResourceKind.NetworkService)
        {
            return
            [
                name,
                new("Address", "string", "The service's address on every node (127.77.0.0/16; NAME.mesh).", 0, (o, _) => Str(o["spec"]?["address"])),
                new("Port", "integer", "The port clients reach the service at.", 0, (o, _) => (int?)o["spec"]?["port"] ?? 0),
                new("Apps", "string", "The apps whose Ready instances are its endpoints.", 0, (o, _) => string.Join(',', (o["spec"]?["apps"] as JsonArray ?? []).Select(Str))),
                new("Endpoints", "string", "Healthy endpoints, of those known.", 0,
                    (o, _) => $"{Str(o["status"]?["healthyEndpoints"])}/{(o["status"]?["endpoints"] as JsonArray)?.Count ?? 0}"),
                age,
            ];
        }

        if (kind == ResourceKind.RuntimeClass)
        {
            return [name, new("Handler", "string", "The runtime it selects (all of Outpost's handlers run WebAssembly).", 0, (o, _) => Str(o["handler"])), age];
        }

        return [name, age];
    }

    private static JsonNode? Usage(JsonObject node, string field) =>
        node["status"]?["usage"]?[field] is JsonValue v && v.TryGetValue<double>(out var value) ? Math.Round(value, 4) : null;

    private static JsonNode? Share(JsonObject node, string used, string total) =>
        node["status"]?["usage"] is JsonObject usage && usage[used] is JsonValue u && u.TryGetValue<double>(out var usedBytes)
            && usage[total] is JsonValue t && t.TryGetValue<double>(out var totalBytes) && totalBytes > 0
            ? Math.Round(usedBytes / totalBytes, 4)
            : null;

    private static string Address(JsonObject node, string type) =>
        (node["status"]?["addresses"] as JsonArray)?.FirstOrDefault(a => (string?)a?["type"] == type)?["address"]?.GetValue<string>() ?? "<none>";

    private static string Age(JsonObject item, DateTimeOffset now) =>
        Str(item["metadata"]?["creationTimestamp"]) is { Length: > 0 } created && DateTimeOffset.TryParse(created, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var at)
            ? HumanDuration.Format(now - at)
            : "<unknown>";

    private static string Str(JsonNode? node) => node is JsonValue v && v.TryGetValue<string>(out var s) ? s : node?.ToJsonString() ?? "";

    /// <summary>"core", "component" or "container": what the app runs, as the server found it at apply.</summary>
    public static string ModuleKind(JsonObject app) =>
        app["spec"]?["image"] is not null ? "container" : Str(app["spec"]?["module"]?["kind"]) is { Length: > 0 } kind ? kind : "-";
}
