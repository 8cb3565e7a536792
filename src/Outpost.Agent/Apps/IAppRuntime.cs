using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Outpost.Core.Resources;
using Outpost.Core.Sync;

namespace Outpost.Agent.Apps;

/// <summary>
/// The runtime seam: what turns a revision into something that serves (the Wasm host compiles a
/// module, the container runtime starts a container). The registry, gateway, probes, probation
/// and rollback, counters and logs work through it and know no runtime.
/// </summary>
public interface IAppRuntime
{
    /// <summary>The runtime's name as status messages give it ("wasm", "runc").</summary>
    string Name { get; }

    /// <summary>Why this runtime cannot run apps on this node, or null when it can.</summary>
    string? Unavailable { get; }

    /// <summary>Readies a revision; throws <see cref="AppLoadException"/> with the reason when it cannot.</summary>
    IAppInstance Load(AppVersion version, ApplicationSpec spec, Action<string, string> runtimeState);
}

/// <summary>One revision ready in its runtime, shared by the requests that use it; disposed when the last lets go.</summary>
public interface IAppInstance : IDisposable
{
    /// <summary>How it was readied, for the log ("precompiled cache", "container 10.213.0.6:8080").</summary>
    string Source { get; }

    /// <summary>Answers one gateway request; the outcome is counted by the caller.</summary>
    Task<ServeOutcome> ServeAsync(HttpContext context, AppRequest request);

    /// <summary>The readiness probe's verdict before the revision takes traffic: null when it passed.</summary>
    Task<string?> ProbeAsync(LoadedApp app, ReadinessProbe probe, CancellationToken cancellationToken);
}

/// <summary>A request routed to an app: which revision, the route it matched and the path asked for.</summary>
public sealed record AppRequest(LoadedApp App, string Route, string Path, ServeServices Services);

/// <summary>What serving needs from the node, whatever the runtime: its log ring, its request limits, the gateway's logger.</summary>
public sealed record ServeServices(Monitoring.LogRing Logs, int MaxRequestBodyBytes, ILogger Logger, Wasm.Wagi.WagiRunner Runner, GuestThreads Threads);

/// <summary>How one request ended, for the app's counters and its rollout gates.</summary>
public readonly record struct ServeOutcome(int Status, Wasm.Wagi.WagiLimit Limit = Wasm.Wagi.WagiLimit.None, long MemoryBytes = 0)
{
    /// <summary>False for an answer the gateway gave itself (a body over the limit): not the app's.</summary>
    public bool Counted { get; init; } = true;
}

/// <summary>A revision its runtime cannot ready, with the reason (reported as the app's status).</summary>
public sealed class AppLoadException : Exception
{
    public AppLoadException(string message)
        : base(message)
    {
    }

    public AppLoadException(string message, Exception inner)
        : base(message, inner)
    {
    }

    public AppLoadException()
    {
    }
}

/// <summary>The runtimes this node has beside Wasm: containers, on Linux, when runc is installed (else apps say why not).</summary>
public sealed class AgentRuntimes
{
    [System.Runtime.Versioning.SupportedOSPlatform("linux")]
    public ContainerAppRuntime? Containers { get; init; }

    /// <summary>The container runtime as the registry takes it (null where there is none).</summary>
    public IAppRuntime? ContainerRuntime { get; init; }
}

/// <summary>This node's ONNX Runtime for WASI-NN: the library's path, or why there is none.</summary>
public sealed record AiRuntime(string? Library, string? Problem);
