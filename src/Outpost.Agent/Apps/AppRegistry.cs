using System.Collections.Frozen;
using System.Collections.Concurrent;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging;
using Outpost.Agent.State;
using Outpost.Core.Resources;
using Outpost.Core.Sync;
using Outpost.Wasm.Hosting;

namespace Outpost.Agent.Apps;

/// <summary>A loaded app: its spec and what its runtime made of it (a compiled module, a container), shared by in-flight requests.</summary>
public sealed class LoadedApp
{
    private int _users = 1; // the registry's own reference

    internal LoadedApp(AppVersion version, ApplicationSpec spec, IAppInstance instance, string nodeName, Wasm.Host.HostGrant grant)
    {
        Grant = grant;
        Version = version;
        Spec = spec;
        Instance = instance;
        Gate = new ConcurrencyGate(spec.Limits.MaxConcurrency, spec.Limits.MaxConcurrency);
        // The app's granted environment, plus who and where it is.
        Env = new Dictionary<string, string>(spec.Env, StringComparer.Ordinal)
        {
            ["OUTPOST_NODE_NAME"] = nodeName,
            ["OUTPOST_APP_NAME"] = version.Name,
            ["OUTPOST_APP_GENERATION"] = version.Generation.ToString(System.Globalization.CultureInfo.InvariantCulture),
        };
        EncodedEnv = new Wasm.Wagi.AppEnvironment(Env);
        EnvPairs = [.. Env];
    }

    public AppVersion Version { get; }

    public ApplicationSpec Spec { get; }

    public string Name => Version.Name;

    public IReadOnlyDictionary<string, string> Env { get; }

    internal Wasm.Wagi.AppEnvironment EncodedEnv { get; }

    /// <summary>The environment as a component's wasi:cli/environment gives it.</summary>
    internal IReadOnlyList<KeyValuePair<string, string>> EnvPairs { get; }

    /// <summary>What this app may call in the outpost module.</summary>
    internal Wasm.Host.HostGrant Grant { get; }

    /// <summary>The directories a Wasm app's guests see (its files and volumes), or null for none.</summary>
    internal Wasm.Wasi.WasiMounts? Mounts { get; init; }

    /// <summary>The models a Wasm app's guests load by name (WASI-NN), or null for none.</summary>
    internal IReadOnlyDictionary<string, Wasm.Nn.NnModel>? Models { get; init; }

    /// <summary>The revision in its runtime: serves requests and probes.</summary>
    public IAppInstance Instance { get; }

    /// <summary>A Wasm app's module or component (events run only in Wasm apps).</summary>
    internal WasmAppInstance Wasm => Instance as WasmAppInstance
        ?? throw new InvalidOperationException($"app '{Name}' is not a Wasm app");

    /// <summary>Bounds this app's concurrent requests (spec.limits.maxConcurrency) and its queue.</summary>
    internal ConcurrencyGate Gate { get; }

    /// <summary>This revision's request counters on this node since it was loaded.</summary>
    public AppCounters Counters { get; } = new();

    /// <summary>Requests this revision answered on this node since it was loaded.</summary>
    public long Requests => Counters.Requests;

    /// <summary>Of those, answered 5xx (app errors, traps, timeouts).</summary>
    public long ServerErrors => Counters.ServerErrors;

    /// <summary>Set while this revision is on probation after a switch, its predecessor kept warm.</summary>
    internal volatile bool Watched;

    /// <summary>True once the registry and every request have let go of this revision: its counters move no more.</summary>
    internal bool Retired => Volatile.Read(ref _users) == 0;

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

    /// <summary>Drops a reference; the instance is freed (a module, a container stopped) when the last one goes, never under a running request.</summary>
    internal void Release()
    {
        if (Interlocked.Decrement(ref _users) == 0)
        {
            Instance.Dispose();
            Gate.Dispose();
            Mounts?.Dispose();
        }
    }
}

/// <summary>An app's state as reported to the server; <paramref name="FailedGeneration"/> is a revision the node rolled back from.</summary>
public sealed record AppStatus(string State, string Message, long Generation, long FailedGeneration = 0);

/// <summary>
/// The apps this node runs, and the route table the gateway reads. Reconciling compiles
/// what is new, swaps the table in one step, and retires what is gone. A new revision that
/// replaces a serving one is on probation for its progress deadline: the previous revision
/// stays compiled and warm, and if the new one's error rate crosses its gate the node swaps
/// the previous back on its own (no server needed) and will not run that revision again.
/// </summary>
public sealed partial class AppRegistry(WasmHost host, ModuleCache modules, string nodeName, Host.AgentHostServices services, ILogger<AppRegistry> logger,
    AgentStore? store = null, TimeProvider? time = null, IAppRuntime? containers = null, AppStorage? storage = null) : IDisposable
{
    private readonly Lock _lock = new();
    private readonly TimeProvider _time = time ?? TimeProvider.System;
    private FrozenDictionary<string, LoadedApp> _apps = FrozenDictionary<string, LoadedApp>.Empty;
    private Route[] _routes = [];
    private readonly ConcurrentDictionary<string, AppStatus> _status = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<LoadedApp, byte> _retiring = new();
    private readonly Dictionary<string, Watch> _watches = new(StringComparer.Ordinal);
    private readonly Dictionary<string, (long Generation, string Reason)> _rejected =
        new(store?.LoadRejected() ?? new Dictionary<string, (long, string)>(), StringComparer.Ordinal);
    private ITimer? _sweep;

    private sealed record Route(string Prefix, LoadedApp App);

    /// <summary>A revision on probation, and the one it replaced, kept warm until <paramref name="Until"/>.</summary>
    private sealed record Watch(LoadedApp Previous, LoadedApp Current, DesiredResource Resource, DateTimeOffset Until);

    public IReadOnlyDictionary<string, AppStatus> Status => _status;

    /// <summary>Where this node keeps its apps' files and volumes (null: apps may not mount any).</summary>
    internal AppStorage? Storage => storage;

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
        if (storage is not null)
        {
            // Volumes of apps deleted while this agent was down.
            var desiredApps = desired.Where(r => r.Kind == ResourceKind.Application.Kind).Select(r => r.Name).ToHashSet(StringComparer.Ordinal);
            foreach (var app in Directory.Exists(storage.VolumesDir) ? Directory.EnumerateDirectories(storage.VolumesDir).Select(Path.GetFileName).OfType<string>().Where(a => !desiredApps.Contains(a)) : [])
            {
                RemoveVolumes(app);
            }
        }

        var retired = new List<LoadedApp>();
        var statusBefore = _status.ToDictionary(p => p.Key, p => p.Value, StringComparer.Ordinal);
        var appsChanged = false;
        lock (_lock)
        {
            var next = _apps.ToDictionary(StringComparer.Ordinal);
            var wanted = new List<(AppVersion Version, ApplicationSpec Spec, DesiredResource Resource)>();
            var planned = new List<AppVersion>();
            foreach (var resource in desired.Where(r => r.Kind == ResourceKind.Application.Kind))
            {
                var (version, spec) = Parse(resource);
                if (_rejected.TryGetValue(version.Name, out var rejected))
                {
                    if (rejected.Generation == version.Generation)
                    {
                        // This node refused the revision: keep what serves (after a restart, the last
                        // revision that served here) until the server sends another generation.
                        if (!next.ContainsKey(version.Name) && LoadLastGood(version) is { } good)
                        {
                            next[version.Name] = good;
                            appsChanged = true;
                        }

                        _status.TryAdd(version.Name, new AppStatus("RolledBack",
                            $"revision {rejected.Generation} was rolled back on this node: {rejected.Reason}", next.GetValueOrDefault(version.Name)?.Version.Generation ?? 0, rejected.Generation));
                        if (next.TryGetValue(version.Name, out var serving))
                        {
                            planned.Add(serving.Version);
                        }

                        continue;
                    }

                    _rejected.Remove(version.Name);
                    store?.ForgetRejected(version.Name);
                }

                wanted.Add((version, spec, resource));
                planned.Add(version);
            }

            var plan = AppPlan.Compute(planned, [.. next.Values.Select(a => a.Version)]);
            foreach (var name in plan.Stop)
            {
                retired.Add(next[name]);
                next.Remove(name);
                if (_watches.Remove(name, out var watch))
                {
                    watch.Current.Watched = false;
                    retired.Add(watch.Previous);
                }

                _status.TryRemove(name, out _);
                _rejected.Remove(name);
                store?.ForgetLastGood(name);
                RemoveVolumes(name);
                LogStopped(logger, name);
            }

            foreach (var version in plan.Start.Concat(plan.Replace))
            {
                var (_, spec, resource) = wanted.First(w => w.Version.Name == version.Name);
                if (_watches.TryGetValue(version.Name, out var kept) && kept.Previous.Version == version)
                {
                    // The fleet went back to the revision this node kept warm: swap it in, no compile.
                    _watches.Remove(version.Name);
                    kept.Current.Watched = false;
                    retired.Add(kept.Current);
                    next[version.Name] = kept.Previous;
                    store?.SaveLastGood(resource);
                    _status[version.Name] = new AppStatus("Ready", "", version.Generation);
                    LogSwappedBack(logger, version.Name, version.Generation);
                    continue;
                }

                try
                {
                    var candidate = Load(version, spec);
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

                        var keeps = old is null ? "nothing serves the app" : $"revision {old.Version.Generation} keeps serving";
                        _status[version.Name] = new AppStatus("Failed", $"readiness probe: {failure}; revision {version.Generation} not taking traffic, {keeps}", version.Generation);
                        Reject(version.Name, version.Generation, $"readiness probe: {failure}");
                        LogProbeFailed(logger, version.Name, version.Generation, failure);
                        continue;
                    }

                    if (old is not null && spec.Rollout.AutoRollback)
                    {
                        // Probation: the revision that served stays warm for the progress deadline.
                        var fallback = old;
                        if (_watches.Remove(version.Name, out var prior))
                        {
                            fallback = prior.Previous; // the proven one, not the one on probation
                            prior.Current.Watched = false;
                            retired.Add(prior.Current);
                        }

                        _watches[version.Name] = new Watch(fallback, candidate, resource, _time.GetUtcNow() + spec.Rollout.ProgressDeadline);
                        candidate.Watched = true;
                        _sweep ??= _time.CreateTimer(_ => Sweep(), null, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(1));
                    }
                    else
                    {
                        if (old is not null)
                        {
                            retired.Add(old);
                        }

                        if (_watches.Remove(version.Name, out var prior))
                        {
                            retired.Add(prior.Previous);
                        }

                        store?.SaveLastGood(resource);
                    }

                    next[version.Name] = candidate;
                    _status[version.Name] = new AppStatus("Ready", "", version.Generation);
                    LogLoaded(logger, version.Name, version.Generation, version.Digest, candidate.Instance.Source);
                }
                catch (Exception ex) when (ex is ModuleRejectedException or IOException or Wasmtime.WasmtimeException or AppLoadException)
                {
                    // Keep serving the previous version, if any, and report the failure.
                    _status[version.Name] = new AppStatus("Failed", ex.Message, version.Generation);
                    LogLoadFailed(logger, version.Name, ex.Message);
                }
            }

            // A node told to run what it already runs (the fleet rolled back to it) is healthy again.
            foreach (var (version, _, _) in wanted)
            {
                if (next.TryGetValue(version.Name, out var running) && running.Version == version
                    && _status.TryGetValue(version.Name, out var status) && (status.State == "RolledBack" || status.State == "Failed" && status.Generation != version.Generation))
                {
                    _status[version.Name] = new AppStatus("Ready", "", version.Generation);
                }
            }

            if (!plan.IsEmpty || appsChanged)
            {
                _apps = next.ToFrozenDictionary(StringComparer.Ordinal);
                _routes = BuildRoutes(_apps.Values);
                appsChanged = true;
            }
        }

        foreach (var app in retired)
        {
            Retire(app);
        }

        if (appsChanged)
        {
            AppsChanged?.Invoke();
        }

        if (appsChanged || _status.Count != statusBefore.Count || _status.Any(p => statusBefore.GetValueOrDefault(p.Key) != p.Value))
        {
            StatusChanged?.Invoke();
        }
    }

    /// <summary>
    /// Counts one answer of an app; while the app is on probation, an answer that takes its
    /// error rate over the gate swaps the previous revision back in.
    /// </summary>
    public void Observe(LoadedApp app, int status, double seconds = 0, Wasm.Wagi.WagiLimit limit = Wasm.Wagi.WagiLimit.None, long memoryBytes = 0)
    {
        ArgumentNullException.ThrowIfNull(app);
        app.Counters.Record(status, seconds, limit, memoryBytes);
        if (app.Watched && app.Spec.Rollout.ErrorRate.Trips(app.Requests, app.ServerErrors))
        {
            var detected = System.Diagnostics.Stopwatch.GetTimestamp();
            var gate = app.Spec.Rollout.ErrorRate;
            RollBack(app, string.Create(System.Globalization.CultureInfo.InvariantCulture,
                $"error rate {100.0 * app.ServerErrors / app.Requests:0}% ({app.ServerErrors} of {app.Requests} requests answered 5xx) is above {100 * gate.Threshold:0.##}%"), detected);
        }
    }

    /// <summary>Swaps the kept revision back in for one on probation that failed; measured from the failed check.</summary>
    private void RollBack(LoadedApp failing, string reason, long detectedAt)
    {
        LoadedApp previous;
        double elapsedMs;
        lock (_lock)
        {
            if (!_watches.TryGetValue(failing.Name, out var watch) || watch.Current != failing)
            {
                return; // another request got here first
            }

            _watches.Remove(failing.Name);
            failing.Watched = false;
            previous = watch.Previous;
            var next = _apps.ToDictionary(StringComparer.Ordinal);
            next[failing.Name] = previous;
            _apps = next.ToFrozenDictionary(StringComparer.Ordinal);
            _routes = BuildRoutes(_apps.Values);
            elapsedMs = System.Diagnostics.Stopwatch.GetElapsedTime(detectedAt).TotalMilliseconds;
            _status[failing.Name] = new AppStatus("RolledBack", string.Create(System.Globalization.CultureInfo.InvariantCulture,
                $"revision {failing.Version.Generation}: {reason}; back on revision {previous.Version.Generation} in {elapsedMs:0.###} ms"),
                previous.Version.Generation, failing.Version.Generation);
            Reject(failing.Name, failing.Version.Generation, reason);
        }

        Retire(failing); // requests still running on it finish there
        LogRolledBack(logger, failing.Name, failing.Version.Generation, previous.Version.Generation, reason, elapsedMs);
        AppsChanged?.Invoke();
        StatusChanged?.Invoke();
    }

    private void Reject(string name, long generation, string reason)
    {
        _rejected[name] = (generation, reason);
        store?.SaveRejected(name, generation, reason);
    }

    /// <summary>Ends the probation of revisions that stayed healthy for their progress deadline.</summary>
    private void Sweep()
    {
        var released = new List<LoadedApp>();
        lock (_lock)
        {
            var now = _time.GetUtcNow();
            foreach (var (name, watch) in _watches.Where(w => w.Value.Until <= now).ToList())
            {
                _watches.Remove(name);
                watch.Current.Watched = false;
                released.Add(watch.Previous);
                store?.SaveLastGood(watch.Resource);
                LogProven(logger, name, watch.Current.Version.Generation, watch.Previous.Version.Generation);
            }
        }

        foreach (var app in released)
        {
            Retire(app);
        }
    }

    /// <summary>
    /// Revisions this node no longer runs (replaced, removed, rolled back) whose last counts may
    /// not have been shipped yet: a rolled-back revision's 5xx are the numbers operators want most.
    /// </summary>
    public IReadOnlyCollection<LoadedApp> Retiring => [.. _retiring.Keys];

    /// <summary>Drops a retired revision once its final counts are taken.</summary>
    public void Forget(LoadedApp app) => _retiring.TryRemove(app, out _);

    private void Retire(LoadedApp app)
    {
        _retiring.TryAdd(app, 0);
        app.Release();
    }

    private static (AppVersion Version, ApplicationSpec Spec) Parse(DesiredResource resource)
    {
        var specObject = JsonNode.Parse(resource.Json)!.AsObject()["spec"]!.AsObject();
        var spec = ApplicationSpec.FromJson(specObject);
        return (new AppVersion(resource.Name, resource.Generation, spec.ArtifactDigest ?? "", JsonCanonical.Serialize(specObject)), spec);
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
            var app = Load(version, spec);
            if (Probe(app) is null)
            {
                LogFellBack(logger, version.Name, version.Generation, failing.Generation);
                return app;
            }

            app.Release();
        }
        catch (Exception ex) when (ex is ModuleRejectedException or IOException or Wasmtime.WasmtimeException or AppLoadException)
        {
            LogLoadFailed(logger, failing.Name, ex.Message);
        }

        return null;
    }

    /// <summary>Runs a new revision's readiness probe in its runtime, before it is routed; null when it passed (or has none).</summary>
    private static string? Probe(LoadedApp candidate)
    {
        if (candidate.Spec.Readiness is not { } probe || candidate.Spec.Http is null)
        {
            return null;
        }

        return candidate.Instance.ProbeAsync(candidate, probe, CancellationToken.None).GetAwaiter().GetResult();
    }

    /// <summary>Readies a revision in its runtime: a Wasm module compiled (or mapped from the cache), or a container started.</summary>
    private LoadedApp Load(AppVersion version, ApplicationSpec spec)
    {
        var capabilities = spec.Capabilities.ToHashSet(StringComparer.Ordinal);
        var grant = new Wasm.Host.HostGrant(version.Name, capabilities, services) { Revision = version.Generation, HttpOut = spec.HttpOut.ToHashSet(StringComparer.Ordinal) };
        if (spec.IsContainer)
        {
            if (containers is null)
            {
                throw new AppLoadException("this node runs no containers (the agent was started without a container runtime)");
            }

            if (containers.Unavailable is { } why)
            {
                throw new AppLoadException($"this node cannot run containers: {why}");
            }

            return new LoadedApp(version, spec, containers.Load(version, spec, (state, message) => RuntimeChanged(version, state, message)), nodeName, grant);
        }

        if (spec.Limits.MemoryMiB > host.MaxMemoryMiB)
        {
            throw new ModuleRejectedException($"limits.memoryMiB {spec.Limits.MemoryMiB} exceeds this node's maximum of {host.MaxMemoryMiB} MiB");
        }

        if (modules.IsComponent(version.Digest))
        {
            var component = host.Components.Load(version.Name, version.Digest, () => modules.Read(version.Digest), capabilities);
            try
            {
                return KindFits(new LoadedApp(version, spec, new WasmAppInstance(component, host), nodeName, grant), component);
            }
            catch
            {
                component.Dispose();
                throw;
            }
        }

        var childFailures = host.ChildFailures;
        var module = host.Load(version.Name, version.Digest, () => modules.Read(version.Digest), capabilities);
        if (host.ChildFailures != childFailures)
        {
            LogCompiledHere(logger, version.Name, host.LastChildFailure ?? "");
        }

        try
        {
            return new LoadedApp(version, spec, new WasmAppInstance(module, host), nodeName, grant)
            {
                Mounts = storage?.Open(version.Name, spec),
                Models = spec.Models.Count == 0 ? null : spec.Models.ToDictionary(m => m.Name, m => new Wasm.Nn.NnModel(m.Digest!, () => modules.Read(m.Digest!)), StringComparer.Ordinal),
            };
        }
        catch
        {
            module.Dispose();
            throw;
        }
    }

    /// <summary>A proxy component serves HTTP only; a command component runs for triggers only: the server refuses other pairings, and so does the node.</summary>
    private static LoadedApp KindFits(LoadedApp app, Wasm.Components.WasmComponent component)
    {
        if (component.Kind == Wasm.Components.ComponentKind.Proxy && (app.Spec.TimerEvery is not null || app.Spec.Topic is not null))
        {
            throw new ModuleRejectedException($"a {component.World} component serves HTTP only; timer and topic triggers run wasi:cli/command components");
        }

        if (component.Kind == Wasm.Components.ComponentKind.Command && app.Spec.Http is not null)
        {
            throw new ModuleRejectedException($"a {component.World} component runs for triggers only; an app with spec.http needs a wasi:http/proxy component");
        }

        return app;
    }

    private void RemoveVolumes(string app)
    {
        try
        {
            storage?.Remove(app);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            LogVolumesNotRemoved(logger, app, e.Message);
        }
    }

    /// <summary>A runtime says how a serving revision is doing (a container that crashed, or runs again).</summary>
    private void RuntimeChanged(AppVersion version, string state, string message)
    {
        lock (_lock)
        {
            if (!_apps.TryGetValue(version.Name, out var serving) || serving.Version != version)
            {
                return; // still loading, or no longer serving: its load or its successor says the status
            }

            _status[version.Name] = state == "Running" ? new AppStatus("Ready", "", version.Generation) : new AppStatus(state, message, version.Generation);
        }

        LogRuntimeState(logger, version.Name, version.Generation, state, message);
        StatusChanged?.Invoke();
    }

    /// <summary>The serving revision of app <paramref name="name"/> on this node, if it runs here.</summary>
    public LoadedApp? Named(string name) => Volatile.Read(ref _apps).GetValueOrDefault(name);

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
        _sweep?.Dispose();
        lock (_lock)
        {
            foreach (var app in _apps.Values)
            {
                app.Release();
            }

            foreach (var watch in _watches.Values)
            {
                watch.Previous.Release();
            }

            _watches.Clear();

            _apps = FrozenDictionary<string, LoadedApp>.Empty;
            _routes = [];
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "App '{App}' revision {Generation} loaded ({Digest}, {Source})")]
    private static partial void LogLoaded(ILogger logger, string app, long generation, string digest, string source);

    [LoggerMessage(Level = LogLevel.Warning, Message = "App '{App}': the compiler process failed ({Reason}); compiled in the agent instead")]
    private static partial void LogCompiledHere(ILogger logger, string app, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "App '{App}' serves revision {Good}, the last that served here, instead of revision {Failing}")]
    private static partial void LogFellBack(ILogger logger, string app, long good, long failing);

    [LoggerMessage(Level = LogLevel.Warning, Message = "App '{App}' revision {Generation} failed its readiness probe ({Failure}): not switching to it")]
    private static partial void LogProbeFailed(ILogger logger, string app, long generation, string failure);

    [LoggerMessage(Level = LogLevel.Warning, Message = "App '{App}' revision {Failing} rolled back to revision {Good} on this node: {Reason} (swapped in {Ms:0.###} ms)")]
    private static partial void LogRolledBack(ILogger logger, string app, long failing, long good, string reason, double ms);

    [LoggerMessage(Level = LogLevel.Information, Message = "App '{App}' back on revision {Generation}, kept warm on this node")]
    private static partial void LogSwappedBack(ILogger logger, string app, long generation);

    [LoggerMessage(Level = LogLevel.Information, Message = "App '{App}' revision {Generation} stayed healthy for its progress deadline; revision {Previous} released")]
    private static partial void LogProven(ILogger logger, string app, long generation, long previous);

    [LoggerMessage(Level = LogLevel.Warning, Message = "App '{App}' failed to load: {Reason}")]
    private static partial void LogLoadFailed(ILogger logger, string app, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "App '{App}' is gone but its volumes could not be removed: {Reason}")]
    private static partial void LogVolumesNotRemoved(ILogger logger, string app, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "App '{App}' revision {Generation} is {State} {Message}")]
    private static partial void LogRuntimeState(ILogger logger, string app, long generation, string state, string message);

    [LoggerMessage(Level = LogLevel.Information, Message = "App '{App}' stopped")]
    private static partial void LogStopped(ILogger logger, string app);
}
