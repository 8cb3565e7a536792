using System.Text.Json;
using System.Text.Json.Nodes;

namespace Outpost.Core.Resources;

/// <summary>The typed view of an Application's spec, read after validation.</summary>
public sealed record ApplicationSpec
{
    public string Runtime { get; init; } = "wasm";

    public required ModuleRef Module { get; init; }

    /// <summary>The runtime name of container apps (spec.runtime, or a RuntimeClass whose handler is runc).</summary>
    public const string ContainerRuntime = "container";

    /// <summary>The RuntimeClass the app names, if any.</summary>
    public string? RuntimeClassName { get; init; }

    /// <summary>A container app's image as the user wrote it (NAME:TAG or NAME@DIGEST), if it is one.</summary>
    public string? Image { get; init; }

    /// <summary>The image's manifest digest: written by the server when the app is applied (a tag resolved then), or given.</summary>
    public string? ImageDigest { get; init; }

    /// <summary>Replaces the image's Entrypoint (and its Cmd), as in Kubernetes.</summary>
    public IReadOnlyList<string> Command { get; init; } = [];

    /// <summary>Replaces the image's Cmd.</summary>
    public IReadOnlyList<string> Args { get; init; } = [];

    /// <summary>The TCP port the container listens on: its http route and the mesh reach it there. Default 8080.</summary>
    public int Port { get; init; } = 8080;

    /// <summary>Always (default), OnFailure or Never.</summary>
    public string RestartPolicy { get; init; } = "Always";

    /// <summary>True for a container app (runc), false for a Wasm app.</summary>
    public bool IsContainer => Image is not null || Runtime == ContainerRuntime;

    /// <summary>What the node fetches and runs: the image's manifest digest, or the module's.</summary>
    public string? ArtifactDigest => IsContainer ? ImageDigest : Module.Digest;

    public HttpTrigger? Http { get; init; }

    /// <summary>Read-only content shipped with the app (spec.files), each mounted at its guest path.</summary>
    public IReadOnlyList<FilesMount> Files { get; init; } = [];

    /// <summary>Writable per-app directories on each node (spec.volumes), kept across requests and revisions.</summary>
    public IReadOnlyList<VolumeSpec> Volumes { get; init; } = [];

    /// <summary>ONNX models the app loads by name through WASI-NN (spec.models).</summary>
    public IReadOnlyList<ModelSpec> Models { get; init; } = [];

    /// <summary>True when the app runs inference (WASI-NN): only nodes with ONNX Runtime can run it.</summary>
    public bool NeedsAi => Models.Count > 0 || Capabilities.Contains(Manifests.ManifestValidator.Nn);

    /// <summary>The blobs a node fetches for the app besides its module or image: its files archives and models.</summary>
    public IEnumerable<string> ExtraBlobs => Files.Select(f => f.Digest).Concat(Models.Select(m => m.Digest)).OfType<string>();

    /// <summary>Run every so often, if set.</summary>
    public TimeSpan? TimerEvery { get; init; }

    /// <summary>Run for each message on this local topic, if set.</summary>
    public string? Topic { get; init; }

    public IReadOnlyDictionary<string, string> Env { get; init; } = StoredResource.EmptyMap;

    public IReadOnlyList<string> Capabilities { get; init; } = [];

    /// <summary>The hosts the app may send HTTP requests to (capability <c>http-out: [HOST, ...]</c>); NAME.mesh is service NAME.</summary>
    public IReadOnlyList<string> HttpOut { get; init; } = [];

    public AppLimits Limits { get; init; } = new();

    public IReadOnlyDictionary<string, string> NodeSelector { get; init; } = StoredResource.EmptyMap;

    /// <summary>Checked on a node before a new revision takes traffic, if set.</summary>
    public ReadinessProbe? Readiness { get; init; }

    /// <summary>How a new revision reaches the app's nodes, and what rolls it back.</summary>
    public RolloutSpec Rollout { get; init; } = RolloutSpec.Default;

    /// <summary>The network service whose endpoints are this app's Ready instances, if set.</summary>
    public ExposeSpec? Expose { get; init; }

    /// <summary>The capability that grants outbound HTTP, with its allow-list: <c>- http-out: [temps.mesh, api.example.com]</c>.</summary>
    public const string HttpOutCapability = "http-out";

    /// <summary>The services this app calls over the mesh: its http-out hosts of the form NAME.mesh.</summary>
    public IEnumerable<string> MeshServicesCalled => HttpOut.Where(h => h.EndsWith(".mesh", StringComparison.Ordinal)).Select(h => h[..^5]);

    /// <summary>Reads a validated spec object.</summary>
    public static ApplicationSpec FromJson(JsonObject spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        var module = spec["module"] as JsonObject ?? [];
        var triggers = spec["triggers"] as JsonObject;
        var http = triggers?["http"] as JsonObject;
        TimeSpan? every = Durations.TryParse(Str((triggers?["timer"] as JsonObject)?["every"]), out var interval) ? interval : null;
        var limits = spec["limits"] as JsonObject;
        return new ApplicationSpec
        {
            Runtime = Str(spec["runtime"]) ?? (spec["image"] is not null ? ContainerRuntime : "wasm"),
            Image = Str(spec["image"]),
            RuntimeClassName = Str(spec["runtimeClassName"]),
            ImageDigest = Str(spec["imageDigest"]) ?? (Str(spec["image"]) is { } image ? ImageReference.Parse(image).Digest : null),
            Command = (spec["command"] as JsonArray)?.Select(Str).OfType<string>().ToArray() ?? [],
            Args = (spec["args"] as JsonArray)?.Select(Str).OfType<string>().ToArray() ?? [],
            Port = Int(spec["port"]) ?? 8080,
            RestartPolicy = Str(spec["restartPolicy"]) ?? "Always",
            Module = new ModuleRef(Str(module["digest"]), Str(module["path"])),
            Http = http is null ? null : new HttpTrigger(Str(http["route"]) ?? "/"),
            Files = [.. (spec["files"] as JsonArray ?? []).OfType<JsonObject>().Select(f => new FilesMount(Str(f["digest"]), Str(f["path"]), Str(f["mountPath"]) ?? "/"))],
            Models = [.. (spec["models"] as JsonArray ?? []).OfType<JsonObject>().Select(m => new ModelSpec(Str(m["name"]) ?? "", Str(m["digest"]), Str(m["path"])))],
            Volumes = [.. (spec["volumes"] as JsonArray ?? []).OfType<JsonObject>().Select(v => new VolumeSpec(Str(v["name"]) ?? "", Str(v["mountPath"]) ?? "/",
                Manifests.ByteQuantity.TryParse(v["sizeLimit"], out var size) ? size : VolumeSpec.DefaultSizeLimit))],
            TimerEvery = every,
            Topic = Str((triggers?["topic"] as JsonObject)?["name"]),
            Env = ResourceJson.ReadMap(spec["env"]),
            Capabilities = (spec["capabilities"] as JsonArray)?.Select(c => c is JsonObject o && o.ContainsKey(HttpOutCapability) ? HttpOutCapability : Str(c)).OfType<string>().ToArray() ?? [],
            HttpOut = (spec["capabilities"] as JsonArray)?.OfType<JsonObject>().SelectMany(o => o[HttpOutCapability] as JsonArray ?? []).Select(Str).OfType<string>().ToArray() ?? [],
            Limits = limits is null ? new AppLimits() : new AppLimits
            {
                MemoryMiB = Int(limits["memoryMiB"]) ?? AppLimits.DefaultMemoryMiB,
                TimeoutMs = Int(limits["timeoutMs"]) ?? AppLimits.DefaultTimeoutMs,
                MaxConcurrency = Int(limits["maxConcurrency"]) ?? AppLimits.DefaultMaxConcurrency,
                MaxResponseBytes = Int(limits["maxResponseBytes"]) ?? AppLimits.DefaultMaxResponseBytes,
                CpuMillis = Int(limits["cpuMillis"]),
                MemoryGiven = limits["memoryMiB"] is not null,
            },
            NodeSelector = ResourceJson.ReadMap((spec["placement"] as JsonObject)?["nodeSelector"]),
            Readiness = spec["readinessProbe"] is JsonObject probe
                ? new ReadinessProbe(Str(probe["path"]) ?? "/", Int(probe["expectStatus"]) ?? 200)
                : null,
            Rollout = RolloutSpec.Read(spec["rollout"]),
            Expose = spec["expose"] is JsonObject expose && Str(expose["service"]) is { } service
                ? new ExposeSpec(service, Int(expose["port"]) ?? ExposeSpec.DefaultPort, Str((expose["ingress"] as JsonObject)?["path"]))
                {
                    Clients = (expose["clients"] as JsonObject)?["nodeSelector"] is { } clients ? ResourceJson.ReadMap(clients) : null,
                }
                : null,
        };
    }

    /// <summary>True when every nodeSelector pair is among the node's labels (an empty selector matches all).</summary>
    public bool Targets(IReadOnlyDictionary<string, string> nodeLabels)
    {
        ArgumentNullException.ThrowIfNull(nodeLabels);
        return NodeSelector.All(p => nodeLabels.TryGetValue(p.Key, out var v) && v == p.Value);
    }

    /// <summary>
    /// True when some node could match both apps' placement: no label is required by both with
    /// different values. Said of selectors, not of today's nodes, since nodes join and relabel.
    /// </summary>
    public bool CanShareANodeWith(ApplicationSpec other)
    {
        ArgumentNullException.ThrowIfNull(other);
        return NodeSelector.All(p => !other.NodeSelector.TryGetValue(p.Key, out var v) || v == p.Value);
    }

    /// <summary>True when both apps answer the same HTTP route on a node both could run on: a node can serve only one of them.</summary>
    public bool RouteConflictsWith(ApplicationSpec other)
    {
        ArgumentNullException.ThrowIfNull(other);
        return Http is { } mine && other.Http is { } theirs && string.Equals(mine.Route, theirs.Route, StringComparison.Ordinal) && CanShareANodeWith(other);
    }

    /// <summary>True when both apps expose the same service on different ports: a service has one port.</summary>
    public bool ExposeConflictsWith(ApplicationSpec other)
    {
        ArgumentNullException.ThrowIfNull(other);
        return Expose is { } mine && other.Expose is { } theirs && mine.Service == theirs.Service && mine.Port != theirs.Port;
    }

    /// <summary>
    /// True when the apps put different services at the same public ingress path, or the same
    /// service at two: one path, one service.
    /// </summary>
    public bool IngressConflictsWith(ApplicationSpec other)
    {
        ArgumentNullException.ThrowIfNull(other);
        return Expose is { Ingress: { } mine } me && other.Expose is { Ingress: { } theirs } them
            && (mine == theirs) != (me.Service == them.Service);
    }

    private static string? Str(JsonNode? node) =>
        node is JsonValue v && v.GetValueKind() == JsonValueKind.String ? v.GetValue<string>() : null;

    private static int? Int(JsonNode? node) =>
        node is JsonValue v && v.GetValueKind() == JsonValueKind.Number && int.TryParse(v.ToJsonString(), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var i) ? i : null;
}

/// <summary>A module either by local path (client side, before upload) or by content digest.</summary>
public sealed record ModuleRef(string? Digest, string? Path);

public sealed record HttpTrigger(string Route);

/// <summary>Read-only content for the app (a directory packed as a tar), by local path before upload, by digest after.</summary>
public sealed record FilesMount(string? Digest, string? Path, string MountPath);

/// <summary>An ONNX model an app loads by <paramref name="Name"/>: by local path before upload, by digest after.</summary>
public sealed record ModelSpec(string Name, string? Digest, string? Path);

/// <summary>A writable directory the app's guests see at <paramref name="MountPath"/>, holding at most <paramref name="SizeLimit"/> bytes.</summary>
public sealed record VolumeSpec(string Name, string MountPath, long SizeLimit)
{
    /// <summary>A volume's size limit when spec.volumes[].sizeLimit is not given: 64 MiB.</summary>
    public const long DefaultSizeLimit = 64L << 20;
}

/// <summary>
/// `spec.expose`: the app's Ready instances are endpoints of network service <paramref name="Service"/>,
/// which clients on any node reach at <paramref name="Port"/> (the app itself serves HTTP through
/// the node's gateway, whatever its route).
/// </summary>
/// <param name="Service">The service's name (a DNS label: NAME.mesh).</param>
/// <param name="Port">The port clients reach it at.</param>
/// <param name="Ingress">A public path the server serves for the service on its ingress listener, without a token (null: none).</param>
public sealed record ExposeSpec(string Service, int Port, string? Ingress = null)
{
    public const int DefaultPort = 80;

    /// <summary>
    /// Nodes whose own programs (not Outpost apps) may open wires to the service: those with all
    /// these labels (<c>clients.nodeSelector</c>); null admits none that way. Apps are admitted by
    /// their http-out list wherever they are placed.
    /// </summary>
    public IReadOnlyDictionary<string, string>? Clients { get; init; }
}

/// <summary>A GET the new revision must answer with <paramref name="ExpectStatus"/> before it serves anyone.</summary>
public sealed record ReadinessProbe(string Path, int ExpectStatus);

/// <summary>Per-app limits; defaults: 64 MiB, 10 s, 64 concurrent requests, 16 MiB responses.</summary>
public sealed record AppLimits
{
    public const int DefaultMemoryMiB = 64;
    public const int DefaultTimeoutMs = 10_000;
    public const int DefaultMaxConcurrency = 64;
    public const int DefaultMaxResponseBytes = 16 * 1024 * 1024;

    public int MemoryMiB { get; init; } = DefaultMemoryMiB;

    public int TimeoutMs { get; init; } = DefaultTimeoutMs;

    public int MaxConcurrency { get; init; } = DefaultMaxConcurrency;

    public int MaxResponseBytes { get; init; } = DefaultMaxResponseBytes;

    /// <summary>A container's CPU time in thousandths of a core (500 = half of one), if limited.</summary>
    public int? CpuMillis { get; init; }

    /// <summary>True when spec.limits.memoryMiB was written: a container is limited only then (a Wasm app always is).</summary>
    public bool MemoryGiven { get; init; }
}
