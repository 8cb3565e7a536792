using Outpost.Core.Manifests;

namespace Outpost.Agent.Hosting;

/// <summary>How `outpost agent` runs.</summary>
public sealed record AgentOptions
{
    /// <summary>The control plane's URL, e.g. http://127.0.0.1:7440.</summary>
    public required string ServerUrl { get; init; }

    /// <summary>
    /// Other replicas of the control plane (from --server URL1,URL2,…): when the current one cannot
    /// be reached or its stream ends, the agent dials the next, resuming from its cursors.
    /// </summary>
    public IReadOnlyList<string> OtherServerUrls { get; init; } = [];

    /// <summary><see cref="ServerUrl"/> and then <see cref="OtherServerUrls"/>: the order the agent tries them in.</summary>
    public IReadOnlyList<string> ServerUrls => [ServerUrl, .. OtherServerUrls];

    /// <summary>A join token from `outpost token create`; needed only until the node has joined.</summary>
    public string? JoinToken { get; init; }

    /// <summary>The node's name; defaults to the host name.</summary>
    public required string NodeName { get; init; }

    public IReadOnlyDictionary<string, string> Labels { get; init; } = new Dictionary<string, string>();

    /// <summary>Where identity, desired state and modules persist.</summary>
    public required string DataDir { get; init; }

    /// <summary>The local HTTP gateway's address. Default 127.0.0.1:8080; port 0 picks a free one.</summary>
    public string Gateway { get; init; } = "127.0.0.1:8080";

    /// <summary>Accept connections on each service's address (127.77.x.y:PORT) and carry them over vWires. Default on.</summary>
    public bool ServiceAddresses { get; init; } = true;

    /// <summary>
    /// Where nodes of this node's site open direct wires to it (HOST:PORT, mutual TLS with node
    /// certificates). Null: the gateway's host on a free port; "off": none (all wires relayed).
    /// </summary>
    public string? MeshListen { get; init; }

    /// <summary>The HOST:PORT other nodes of the site dial for direct wires, when the bound address is not it (NAT, a wildcard bind).</summary>
    public string? MeshAdvertise { get; init; }

    /// <summary>Answer DNS (UDP) here for NAME.mesh with the service's address (HOST:PORT), or null for none.</summary>
    public string? Dns { get; init; }

    /// <summary>How often the agent beats while connected. Default 10 s (three beats per server lease).</summary>
    public TimeSpan HeartbeatInterval { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>First reconnect delay; doubles per failure, with full jitter. Default 250 ms.</summary>
    public TimeSpan InitialBackoff { get; init; } = TimeSpan.FromMilliseconds(250);

    /// <summary>Ceiling of the reconnect delay. Default 10 s.</summary>
    public TimeSpan MaxBackoff { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// The ONNX Runtime library for WASI-NN: a path, "off", or null to look next to the executable
    /// and on LD_LIBRARY_PATH. Without one the node reports ai unavailable and gets no app that needs it.
    /// </summary>
    public string? OnnxRuntime { get; init; }

    /// <summary>Wasm instances that can run at once on this node, across all apps (pool slots). Default 256.</summary>
    public int MaxInstances { get; init; } = 256;

    /// <summary>The most memory one instance may use, in MiB; apps asking for more are refused here. Default 256.</summary>
    public int MaxInstanceMemoryMiB { get; init; } = 256;

    /// <summary>
    /// Compile modules in a child process (`outpost wasm compile`), so compiling never grows the
    /// agent's memory: true, false, or null for the default (yes in the release binary, no on the JIT
    /// build, whose every start costs ~0.3 s).
    /// </summary>
    public bool? CompileInChild { get; init; }

    /// <summary>Most payload bytes the outbox holds while the cloud is unreachable. Default 256 MiB.</summary>
    public long OutboxQuotaBytes { get; init; } = State.LocalDataStore.DefaultQuotaBytes;

    /// <summary>What happens at the quota: drop the oldest records (default) or reject new ones. Either way, every loss is counted.</summary>
    public State.OverflowPolicy OutboxOverflow { get; init; } = State.OverflowPolicy.DropOldest;

    /// <summary>Most bytes of log lines the node keeps while they wait to be shipped; past it the oldest are dropped (and counted). Default 16 MiB.</summary>
    public long LogQuotaBytes { get; init; } = Monitoring.LogRing.DefaultQuotaBytes;

    /// <summary>
    /// Silence after which the agent pings the server; it waits as long for the answer, but at
    /// most <see cref="MaxKeepAliveTimeout"/>, before dropping the link. Default 60 s: a hung
    /// server is found within 65 s, at one ping a minute on an idle link. (A dead link is found
    /// sooner, by the kernel: see SyncClient.UnacknowledgedTimeout.)
    /// </summary>
    public TimeSpan KeepAlive { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>The longest the agent waits for a keepalive ping's answer (a live server answers in milliseconds).</summary>
    public static readonly TimeSpan MaxKeepAliveTimeout = TimeSpan.FromSeconds(5);

    /// <summary>How long the agent waits for a keepalive ping's answer.</summary>
    public TimeSpan KeepAlivePingTimeout => KeepAlive < MaxKeepAliveTimeout ? KeepAlive : MaxKeepAliveTimeout;

    /// <summary>Largest request body the gateway buffers for an app. Default 16 MiB.</summary>
    public int MaxRequestBodyBytes { get; init; } = 16 * 1024 * 1024;

    public void Validate()
    {
        foreach (var url in ServerUrls)
        {
            if (!Uri.TryCreate(url, UriKind.Absolute, out var uri) || (uri.Scheme != "http" && uri.Scheme != "https"))
            {
                throw new ArgumentException($"--server '{url}' is not an http(s) URL");
            }
        }

        if (ServerUrls.Select(u => new Uri(u).Scheme).Distinct(StringComparer.Ordinal).Count() > 1)
        {
            throw new ArgumentException($"--server {string.Join(',', ServerUrls)} mixes http and https: every replica of one control plane speaks the same");
        }

        if (!ManifestValidator.IsDnsLabel(NodeName))
        {
            throw new ArgumentException($"--name '{NodeName}' is not a valid node name: use at most 63 lowercase letters, digits and '-'");
        }

        if (string.IsNullOrWhiteSpace(DataDir))
        {
            throw new ArgumentException("--data-dir is required");
        }

        if (MaxInstances is < 1 or > 10_000 || MaxInstanceMemoryMiB is < 1 or > 4096)
        {
            throw new ArgumentException("--max-instances must be 1..10000 and --max-instance-memory 1..4096 MiB");
        }

        if (MeshListen is not null and not "off" && !Core.Api.ListenAddress.TryParse(MeshListen, out _))
        {
            throw new ArgumentException($"--mesh-listen '{MeshListen}' is not HOST:PORT or 'off'");
        }

        if (MeshAdvertise is not null && !Mesh.MeshPeers.TryParseAddress(MeshAdvertise, out _))
        {
            throw new ArgumentException($"--mesh-advertise '{MeshAdvertise}' is not HOST:PORT");
        }

        if (LogQuotaBytes < 1024)
        {
            throw new ArgumentException("--log-quota must be at least 1KiB");
        }

        if (InitialBackoff <= TimeSpan.Zero || MaxBackoff < InitialBackoff || HeartbeatInterval <= TimeSpan.Zero)
        {
            throw new ArgumentException("backoff and heartbeat intervals must be positive, and the maximum backoff at least the initial one");
        }
    }
}
