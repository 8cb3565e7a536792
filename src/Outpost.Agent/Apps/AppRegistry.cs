using System.Collections.Frozen;
using System.Collections.Concurrent;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging;
using Outpost.Agent.State;
using Outpost.Core.Resources;
using Outpost.Core.Sync;
using Outpost.Wasm.Hosting;

namespace Outpost.Agent.Apps;

/// <summary>A loaded app: its compiled module and spec, shared by in-flight requests.</summary>
public sealed class LoadedApp
{
    private int _users = 1; // the registry's own reference
    private readonly WasmModule _module;

    internal LoadedApp(AppVersion version, ApplicationSpec spec, WasmModule module, string nodeName, Wasm.Host.HostGrant grant)
    {
        Grant = grant;
        Version = version;
        Spec = spec;
        _module = module;
        Gate = new ConcurrencyGate(spec.Limits.MaxConcurrency, spec.Limits.MaxConcurrency);
        // The app's granted environment, plus who and where it is.
        Env = new Dictionary<string, string>(spec.Env, StringComparer.Ordinal)
        {
            ["OUTPOST_NODE_NAME"] = nodeName,
            ["OUTPOST_APP_NAME"] = version.Name,
            ["OUTPOST_APP_GENERATION"] = version.Generation.ToString(System.Globalization.CultureInfo.InvariantCulture),
        };
        EncodedEnv = new Wasm.Wagi.AppEnvironment(Env);
    }

    public AppVersion Version { get; }

    public ApplicationSpec Spec { get; }

    public string Name => Version.Name;

    public IReadOnlyDictionary<string, string> Env { get; }

    internal Wasm.Wagi.AppEnvironment EncodedEnv { get; }

    /// <summary>What this app may call in the outpost module.</summary>
    internal Wasm.Host.HostGrant Grant { get; }

    internal WasmModule Module => _module;

    /// <summary>Bounds this app's concurrent requests (spec.limits.maxConcurrency) and its queue.</summary>
    internal ConcurrencyGate Gate { get; }

    /// <summary>Takes a reference for one request; false when the app was retired meanwhile.</summary>
    internal bool TryAcquire()
    {
        while (true)
        {
            var users = Volatile.Read(ref _users);
            if (users == 0)
            {
                return false;
            }

            if (Interlocked.CompareExchange(ref _users, users + 1, users) == users)
            {
                return true;
            }
        }
    }

    /// <summary>Drops a reference; the module is freed when the last one goes, never under a running request.</summary>
    internal void Release()
    {
        if (Interlocked.Decrement(ref _users) == 0)
        {
            _module.Dispose();
            Gate.Dispose();
        }
    }
}

/// <summary>An app's state as reported to the server.</summary>
public sealed record AppStatus(string State, string Message, long Generation);

/// <summary>
/// The apps this node runs, and the route table the gateway reads. Reconciling compiles
/// what is new, swaps the table in one step, and retires what is gone.
/// </summary>
public sealed partial class AppRegistry(WasmHost host, ModuleCache modules, string nodeName, Host.AgentHostServices services, ILogger<AppRegistry> logger, AgentStore? store = null) : IDisposable
{
    private readonly Lock _lock = new();
    private FrozenDictionary<string, LoadedApp> _apps = FrozenDictionary<string, LoadedApp>.Empty;
    private Route[] _routes = [];
    private readonly ConcurrentDictionary<string, AppStatus> _status = new(StringComparer.Ordinal);

    private sealed record Route(string Prefix, LoadedApp App);

    public IReadOnlyDictionary<string, AppStatus> Status => _status;

    /// <summary>Raised after a reconcile changes any app's status.</summary>
    public event Action? StatusChanged;

    /// <summary>Raised after the set of loaded apps changed (for timers and topic subscriptions).</summary>
    public event Action? AppsChanged;

    /// <summary>The apps loaded right now.</summary>
    public IReadOnlyCollection<LoadedApp> Loaded => Volatile.Read(ref _apps).Values;

    /// <summary>Makes the running set match the desired applications; modules must already be cached.</summary>
    public void Reconcile(IReadOnlyList<DesiredResource> desired)
    {
        ArgumentNullException.ThrowIfNull(desired);
        services.UpdateConfig(desired.Where(r => r.Kind == ResourceKind.ConfigSet.Kind).Select(r => (r.Name, r.Json)));
        services.UpdateSecrets(desired.Where(r => r.Kind == ResourceKind.Secret.Kind).Select(r => (r.Name, r.Json)));
        services.UpdateBuckets(desired.Where(r => r.Kind == ResourceKind.Bucket.Kind).Select(r => (r.Name, r.Json)));
        lock (_lock)
        {
            var wanted = new List<(AppVersion Version, ApplicationSpec Spec, DesiredResource Resource)>();
            foreach (var resource in desired.Where(r => r.Kind == ResourceKind.Application.Kind))
            {
                var (version, spec) = Parse(resource);
                wanted.Add((version, spec, resource));
            }

            var plan = AppPlan.Compute([.. wanted.Select(w => w.Version)], [.. _apps.Values.Select(a => a.Version)]);
            if (plan.IsEmpty)
            {
                return;
            }

            var next = _apps.ToDictionary(StringComparer.Ordinal);
            var retired = new List<LoadedApp>();
            foreach (var name in plan.Stop)
            {
                retired.Add(next[name]);
                next.Remove(name);
                _status.TryRemove(name, out _);
                store?.ForgetLastGood(name);
                LogStopped(logger, name);
            }

            foreach (var version in plan.Start.Concat(plan.Replace))
            {
                var (_, spec, resource) = wanted.First(w => w.Version.Name == version.Name);
                try
                {
                    if (spec.Limits.MemoryMiB > host.MaxMemoryMiB)
                    {
                        throw new ModuleRejectedException($"limits.memoryMiB {spec.Limits.MemoryMiB} exceeds this node's maximum of {host.MaxMemoryMiB} MiB");
                    }

                    var capabilities = spec.Capabilities.ToHashSet(StringComparer.Ordinal);
                    var module = host.Load(version.Name, version.Digest, () => modules.Read(version.Digest), capabilities);
                    var candidate = new LoadedApp(version, spec, module, nodeName, new Wasm.Host.HostGrant(version.Name, capabilities, services));
                    next.TryGetValue(version.Name, out var old);
                    if (Probe(candidate) is { } failure)
                    {
                        // The new revision never takes traffic; whatever served before keeps serving,
                        // or (after a restart, nothing loaded yet) the last revision that served here.
                        candidate.Release();
                        old ??= LoadLastGood(version);
                        if (old is not null)
                        {
                            next[version.Name] = old;
                        }

                        var keeps = old is null ? "nothing serves the app" : $"generation {old.Version.Generation} keeps serving";
                        _status[version.Name] = new AppStatus("Failed", $"readiness probe: {failure}; generation {version.Generation} not taking traffic, {keeps}", version.Generation);
                        LogProbeFailed(logger, version.Name, version.Generation, failure);
                        continue;
                    }

                    if (old is not null)
                    {
                        retired.Add(old);
                    }

                    next[version.Name] = candidate;
                    store?.SaveLastGood(resource);
                    _status[version.Name] = new AppStatus("Ready", "", version.Generation);
                    LogLoaded(logger, version.Name, version.Generation, version.Digest, module.FromCache ? "precompiled cache" : "compiled");
                }
                catch (Exception ex) when (ex is ModuleRejectedException or IOException or Wasmtime.WasmtimeException)
                {
                    // Keep serving the previous version, if any, and report the failure.
                    _status[version.Name] = new AppStatus("Failed", ex.Message, version.Generation);
                    LogLoadFailed(logger, version.Name, ex.Message);
                }
            }

            _apps = next.ToFrozenDictionary(StringComparer.Ordinal);
            _routes = BuildRoutes(_apps.Values);
            foreach (var app in retired)
            {
                app.Release();
            }
        }

        AppsChanged?.Invoke();
        StatusChanged?.Invoke();
    }

    private static (AppVersion Version, ApplicationSpec Spec) Parse(DesiredResource resource)
    {
        var specObject = JsonNode.Parse(resource.Json)!.AsObject()["spec"]!.AsObject();
        var spec = ApplicationSpec.FromJson(specObject);
        return (new AppVersion(resource.Name, resource.Generation, spec.Module.Digest ?? "", JsonCanonical.Serialize(specObject)), spec);
    }

    /// <summary>The last revision that served on this node, loaded and probed again; null when there is none (or it fails too).</summary>
    private LoadedApp? LoadLastGood(AppVersion failing)
    {
        if (store?.LoadLastGood().GetValueOrDefault(failing.Name) is not { } resource || resource.Generation == failing.Generation)
        {
            return null;
        }

        try
        {
            var (version, spec) = Parse(resource);
            var capabilities = spec.Capabilities.ToHashSet(StringComparer.Ordinal);
            var module = host.Load(version.Name, version.Digest, () => modules.Read(version.Digest), capabilities);
            var app = new LoadedApp(version, spec, module, nodeName, new Wasm.Host.HostGrant(version.Name, capabilities, services));
            if (Probe(app) is null)
            {
                LogFellBack(logger, version.Name, version.Generation, failing.Generation);
                return app;
            }

            app.Release();
        }
        catch (Exception ex) when (ex is ModuleRejectedException or IOException or Wasmtime.WasmtimeException)
        {
            LogLoadFailed(logger, failing.Name, ex.Message);
        }

        return null;
    }

    /// <summary>Runs a new revision's readiness probe in a fresh instance, before it is routed; null when it passed (or has none).</summary>
    private string? Probe(LoadedApp candidate)
    {
        if (candidate.Spec.Readiness is not { } probe || candidate.Spec.Http is not { } http)
        {
            return null;
        }

        var request = new Wasm.Wagi.WagiRequest { Method = "GET", Path = probe.Path, Route = http.Route, RemoteAddress = "127.0.0.1" };
        var outcome = new Wasm.Wagi.WagiRunner(host).Handle(candidate.Module, request, candidate.EncodedEnv, candidate.Spec.Limits, candidate.Grant);
        return outcome.Response.Status == probe.ExpectStatus
            ? null
            : $"GET {probe.Path} answered {outcome.Response.Status} (expected {probe.ExpectStatus}){(outcome.Error is null ? "" : ": " + outcome.Error)}";
    }

    /// <summary>
    /// Longest-prefix routing on whole path segments: "/hello" serves "/hello" and "/hello/x",
    /// not "/helloworld". On a tie the app first by name wins, and the other reports it.
    /// </summary>
    public LoadedApp? Match(string path)
    {
        foreach (var route in Volatile.Read(ref _routes))
        {
            if (route.Prefix == "/" || path == route.Prefix
                || (path.StartsWith(route.Prefix, StringComparison.Ordinal) && (route.Prefix.EndsWith('/') || path[route.Prefix.Length] == '/')))
            {
                return route.App;
            }
        }

        return null;
    }

    private Route[] BuildRoutes(IEnumerable<LoadedApp> apps)
    {
        var routes = new List<Route>();
        foreach (var group in apps.Where(a => a.Spec.Http is not null).GroupBy(a => a.Spec.Http!.Route).OrderByDescending(g => g.Key.Length))
        {
            var ordered = group.OrderBy(a => a.Name, StringComparer.Ordinal).ToList();
            routes.Add(new Route(group.Key, ordered[0]));
            if (_status.TryGetValue(ordered[0].Name, out var winner) && winner.Message.StartsWith("route ", StringComparison.Ordinal))
            {
                _status[ordered[0].Name] = new AppStatus("Ready", "", ordered[0].Version.Generation);
            }

            foreach (var loser in ordered.Skip(1))
            {
                _status[loser.Name] = new AppStatus("Failed", $"route {group.Key} is already served by app '{ordered[0].Name}'", loser.Version.Generation);
            }
        }

        return [.. routes];
    }

    public void Dispose()
    {
        lock (_lock)
        {
            foreach (var app in _apps.Values)
            {
                app.Release();
            }

            _apps = FrozenDictionary<string, LoadedApp>.Empty;
            _routes = [];
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "App '{App}' generation {Generation} loaded ({Digest}, {Source})")]
    private static partial void LogLoaded(ILogger logger, string app, long generation, string digest, string source);

    [LoggerMessage(Level = LogLevel.Warning, Message = "App '{App}' serves generation {Good}, the last that served here, instead of generation {Failing}")]
    private static partial void LogFellBack(ILogger logger, string app, long good, long failing);

    [LoggerMessage(Level = LogLevel.Warning, Message = "App '{App}' generation {Generation} failed its readiness probe ({Failure}): not switching to it")]
    private static partial void LogProbeFailed(ILogger logger, string app, long generation, string failure);

    [LoggerMessage(Level = LogLevel.Warning, Message = "App '{App}' failed to load: {Reason}")]
    private static partial void LogLoadFailed(ILogger logger, string app, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "App '{App}' stopped")]
    private static partial void LogStopped(ILogger logger, string app);
}
