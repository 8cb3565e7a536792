using System.Collections.Concurrent;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Outpost.Core.Api;
using Outpost.Core.Resources;
using Outpost.Core.Rollouts;
using Outpost.Core.Store;
using Outpost.Core.Sync;

namespace Outpost.Server.Sync;

/// <summary>
/// Drives every Application's rollout: when a new generation appears it starts one from the
/// last revision every node ran, then moves nodes step by step as they report the revision
/// ready, and stops it — rolling the moved nodes back — when a gate fails: a node failing the
/// revision or rolling it back on its own, the error rate the agents report, or the progress
/// deadline. Each change of what a node runs is a store revision, so sync sessions pick it up.
/// </summary>
public sealed partial class RolloutController(
    IControlPlaneStore store,
    ChangeFeed feed,
    FleetPresence leases,
    Hosting.Leadership leadership,
    Hosting.ServerOptions options,
    TimeProvider time,
    ILogger<RolloutController> logger) : BackgroundService
{
    /// <summary>How often an active rollout is looked at when nothing else wakes the controller (pauses, deadlines).</summary>
    private static readonly TimeSpan Tick = TimeSpan.FromMilliseconds(250);

    /// <summary>Traffic samples older than the longest error-rate window are dropped.</summary>
    private static readonly TimeSpan MaxWindow = RolloutSpec.MaxWindow;

    private readonly SemaphoreSlim _gate = new(1, 1);
    private readonly SemaphoreSlim _wake = new(0, int.MaxValue);
    private readonly ConcurrentDictionary<string, RolloutState> _current = new(StringComparer.Ordinal);
    /// <summary>
    /// Set by an undo on the app it writes, to the generation it creates: that generation rolls to
    /// every node at once. In the resource, so whichever replica leads sees it.
    /// </summary>
    public const string UndoAnnotation = "outpost.dev/undo-generation";
    private readonly ConcurrentDictionary<string, ConcurrentQueue<Sample>> _traffic = new(StringComparer.Ordinal);

    private readonly record struct Sample(DateTimeOffset At, string Node, long Generation, long Requests, long ServerErrors);

    /// <summary>Samples received here and not yet in the store, where the leader (whichever replica it is) reads them.</summary>
    private readonly ConcurrentQueue<TrafficSample> _unshared = new();

    /// <summary>Most samples kept for the store while it cannot be written; past it the oldest are dropped.</summary>
    private const int MaxUnshared = 100_000;

    /// <summary>Other replicas' traffic per app revision and window, as last summed in the store, and when.</summary>
    private readonly ConcurrentDictionary<(string App, long Revision, TimeSpan Window), (DateTimeOffset At, TrafficSummary Sum)> _peerTraffic = new();

    /// <summary>The latest state of an app's rollout, or null when it has none yet.</summary>
    public RolloutState? Current(string app) => _current.GetValueOrDefault(app);

    /// <summary>Asks for an evaluation soon (a node reported app states).</summary>
    public void Signal() => _wake.Release();

    /// <summary>Counts a node's requests and 5xx answers for one revision of an app, as its heartbeat reported them.</summary>
    public void RecordTraffic(string node, string app, long generation, long requests, long serverErrors)
    {
        var now = time.GetUtcNow();
        var samples = _traffic.GetOrAdd(app, _ => new ConcurrentQueue<Sample>());
        samples.Enqueue(new Sample(now, node, generation, requests, serverErrors));
        _unshared.Enqueue(new TrafficSample(app, generation, node, leases.Replica, now, requests, serverErrors));
        while (_unshared.Count > MaxUnshared && _unshared.TryDequeue(out _))
        {
        }

        while (samples.TryPeek(out var oldest) && now - oldest.At > MaxWindow)
        {
            samples.TryDequeue(out _);
        }

        if (serverErrors > 0)
        {
            Signal();
        }
    }

    /// <summary>
    /// An app revision's traffic over a window: what nodes reported to this replica (in memory),
    /// plus what they reported to others (and to this server before a restart), summed in the
    /// store at most once a second.
    /// </summary>
    private async Task<TrafficSummary> TrafficOfAsync(string app, long generation, TimeSpan window, DateTimeOffset now, CancellationToken ct)
    {
        long requests = 0, errors = 0;
        if (_traffic.TryGetValue(app, out var samples))
        {
            foreach (var sample in samples)
            {
                if (sample.Generation == generation && now - sample.At <= window)
                {
                    requests += sample.Requests;
                    errors += sample.ServerErrors;
                }
            }
        }

        var key = (app, generation, window);
        if (!_peerTraffic.TryGetValue(key, out var peers) || now - peers.At >= TimeSpan.FromSeconds(1))
        {
            var (peerRequests, peerErrors) = await store.SumTrafficAsync(app, generation, now - window, leases.Replica, ct);
            peers = (now, new TrafficSummary(peerRequests, peerErrors));
            _peerTraffic[key] = peers;
        }

        return new TrafficSummary(requests + peers.Sum.Requests, errors + peers.Sum.ServerErrors);
    }

    /// <summary>Writes the samples received here to the store; the leader also drops those older than the longest window.</summary>
    private async Task ShareTrafficAsync(CancellationToken ct)
    {
        var batch = new List<TrafficSample>();
        while (_unshared.TryPeek(out var sample) && batch.Count < 10_000)
        {
            batch.Add(sample);
            _unshared.TryDequeue(out _);
        }

        if (batch.Count > 0)
        {
            try
            {
                await store.AppendTrafficAsync(batch, ct);
            }
            catch
            {
                // Kept for the next turn, ahead of what came since (order does not matter to a sum).
                foreach (var sample in batch)
                {
                    _unshared.Enqueue(sample);
                }

                throw;
            }
        }

        var now = time.GetUtcNow();
        if (leadership.IsLeader && now >= _nextPrune)
        {
            _nextPrune = now + TimeSpan.FromMinutes(1);
            await store.PruneTrafficAsync(now - MaxWindow, ct);
            foreach (var stale in _peerTraffic.Where(p => now - p.Value.At > TimeSpan.FromMinutes(1)).Select(p => p.Key).ToList())
            {
                _peerTraffic.TryRemove(stale, out _);
            }
        }
    }

    private DateTimeOffset _nextPrune = DateTimeOffset.MinValue;

    /// <summary>
    /// The loop runs on the leading replica only (<see cref="Hosting.Leadership"/>); the others
    /// follow the states it saves, so every replica's API shows the rollout as it stands.
    /// </summary>
    protected override Task ExecuteAsync(CancellationToken stoppingToken) =>
        Task.WhenAll(leadership.RunWhileLeaderAsync(RunAsync, stoppingToken), FollowAsync(stoppingToken));

    /// <summary>
    /// On every replica, each second: writes the traffic samples received here to the store; and
    /// while this replica does not lead, reads the saved states (also at each change of the store).
    /// </summary>
    private async Task FollowAsync(CancellationToken stoppingToken)
    {
        try
        {
            while (!stoppingToken.IsCancellationRequested)
            {
                var revision = feed.Latest;
                try
                {
                    await ShareTrafficAsync(stoppingToken);
                }
                catch (Exception ex) when (ex is not OperationCanceledException)
                {
                    LogFollowFailed(logger, ex.Message);
                }

                if (!leadership.IsLeader)
                {
                    try
                    {
                        var saved = await store.ListRolloutsAsync(stoppingToken);
                        foreach (var (app, state) in saved)
                        {
                            _current[app] = state;
                        }

                        foreach (var gone in _current.Keys.Where(k => !saved.ContainsKey(k)).ToList())
                        {
                            _current.TryRemove(gone, out _);
                        }
                    }
                    catch (Exception ex) when (ex is not OperationCanceledException)
                    {
                        LogFollowFailed(logger, ex.Message);
                    }
                }

                using var wait = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
                await Task.WhenAny(feed.WaitAfterAsync(revision, wait.Token), Task.Delay(TimeSpan.FromSeconds(1), time, wait.Token));
                await wait.CancelAsync();
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    private async Task RunAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            var revision = feed.Latest;
            try
            {
                await _gate.WaitAsync(stoppingToken);
                try
                {
                    await EvaluateAsync(null, stoppingToken);
                }
                finally
                {
                    _gate.Release();
                }
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                LogEvaluationFailed(logger, ex);
            }

            using var wait = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
            var active = _current.Values.Any(s => !s.IsTerminal);
            var woken = await Task.WhenAny(
                feed.WaitAfterAsync(revision, wait.Token),
                _wake.WaitAsync(wait.Token),
                Task.Delay(active ? Tick : Timeout.InfiniteTimeSpan, time, wait.Token));
            await wait.CancelAsync();
            stoppingToken.ThrowIfCancellationRequested();
            while (_wake.CurrentCount > 0 && _wake.Wait(0, CancellationToken.None))
            {
                // Several signals wake one evaluation.
            }
        }
    }

    /// <summary>
    /// Writes an earlier revision's spec back (the undo) and rolls it to every node at once,
    /// whatever the app's strategy: going back to known-good is not a canary.
    /// </summary>
    public async Task<WriteResult> UndoAsync(string app, Func<Task<WriteResult>> write, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(write);
        await _gate.WaitAsync(cancellationToken);
        try
        {
            // The write carries UndoAnnotation; the leader starts the rollout from it. Here, if
            // this replica leads, at once; else the leader wakes at the change.
            var result = await write();
            if (leadership.IsLeader)
            {
                await EvaluateAsync(app, cancellationToken);
            }

            return result;
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>Pauses or resumes an app's rollout (with none in progress: the next one); null when the app has none yet.</summary>
    public async Task<RolloutState?> SetPausedAsync(string app, bool paused, CancellationToken cancellationToken)
    {
        await _gate.WaitAsync(cancellationToken);
        try
        {
            // On any replica: saved only over the state it was made from, so a step the leader saves
            // meanwhile is not undone, nor the pause by the leader's next save; on a clash, again.
            RolloutState next;
            DateTimeOffset now;
            for (var attempt = 1; ; attempt++)
            {
                var state = (await store.ListRolloutsAsync(cancellationToken)).GetValueOrDefault(app);
                if (state is null)
                {
                    return null;
                }

                now = time.GetUtcNow();
                next = paused ? RolloutPlanner.Pause(state, now) : RolloutPlanner.Resume(state, now);
                try
                {
                    await store.SaveRolloutAsync(app, next, movesNodes: false, null, cancellationToken, unchangedFrom: state);
                    break;
                }
                catch (StoreException e) when (e.Error == StoreError.Conflict && attempt < 5)
                {
                    LogSaveClashed(logger, app, e.Message);
                }
            }

            _current[app] = next;
            LogPaused(logger, app, next.Revision, paused ? "paused" : "resumed");
            await store.AppendEventAsync(new EventRecord(0, now, ResourceKind.Application.Kind, app, "Normal", paused ? "RolloutPaused" : "RolloutResumed",
                $"revision {next.Revision} {(paused ? "paused" : "resumed")} at step {next.Step + 1} of {next.Steps} (`outpost rollout {(paused ? "resume" : "pause")}` to undo)"), cancellationToken);
            Signal();
            return next;
        }
        finally
        {
            _gate.Release();
        }
    }

    /// <summary>Evaluates one app (or all); the caller holds the gate.</summary>
    private async Task EvaluateAsync(string? only, CancellationToken ct)
    {
        var apps = (await store.ListAsync(ResourceKind.Application.Kind, ct)).Items;
        var rollouts = await store.ListRolloutsAsync(ct);
        // The nodes each app's selector matches, read once per selector (not the whole fleet for
        // each evaluation: an undo on 1,000 nodes of 10,000 was mostly reading the other 9,000).
        var selected = new Dictionary<string, IReadOnlyList<StoredResource>>(StringComparer.Ordinal);
        async Task<IReadOnlyList<StoredResource>> NodesOf(ApplicationSpec spec)
        {
            var key = string.Join('\n', spec.NodeSelector.OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => p.Key + "=" + p.Value));
            if (!selected.TryGetValue(key, out var nodes))
            {
                selected[key] = nodes = (await store.ListAsync(ResourceKind.Node.Kind, spec.NodeSelector, ct)).Items;
            }

            return nodes;
        }

        var now = time.GetUtcNow();
        // Each node's status read once for every app evaluated, and only if an app targets it.
        var statuses = new Dictionary<string, Dictionary<string, NodeAppReport>>(StringComparer.Ordinal);
        Dictionary<string, NodeAppReport> AppsOf(StoredResource node) =>
            statuses.TryGetValue(node.Name, out var read) ? read : statuses[node.Name] = NodeStatusReader.Read(node.StatusJson).Apps;
        foreach (var gone in _current.Keys.Where(k => !apps.Any(a => a.Name == k)).ToList())
        {
            _current.TryRemove(gone, out _);
            _traffic.TryRemove(gone, out _);
        }

        foreach (var app in apps)
        {
            if (only is not null && app.Name != only)
            {
                continue;
            }

            var spec = ApplicationSpec.FromJson(app.Spec());
            var targeted = (await NodesOf(spec)).Where(n => NodeDesiredState.Places(spec, n)).ToList();
            var saved = rollouts.GetValueOrDefault(app.Name);
            var state = saved;
            if (state is null || state.Revision != app.Generation)
            {
                if (state is { IsTerminal: false })
                {
                    await store.SetRevisionOutcomeAsync(app.Name, state.Revision, "Superseded", ct);
                }

                var immediate = app.Annotations.TryGetValue(UndoAnnotation, out var undo)
                    && undo == app.Generation.ToString(System.Globalization.CultureInfo.InvariantCulture);
                state = RolloutPlanner.Start(state, app.Generation, spec.Rollout, targeted.Count, immediate, now);
                var how = state.Immediate ? "undo: every node at once" : RolloutState.Format(state.Strategy);
                LogStarted(logger, app.Name, state.Revision, state.StableRevision, how);
                await store.AppendEventAsync(new EventRecord(0, now, ResourceKind.Application.Kind, app.Name, "Normal", "RolloutStarted",
                    state.StableRevision == 0 ? $"revision {state.Revision}: a new app, to every node it targets" : $"revision {state.Revision} from revision {state.StableRevision} ({how}) to {(targeted.Count == 1 ? "1 node" : $"{targeted.Count} nodes")}"), ct);
            }

            var reports = targeted.Select(n => Report(n, app.Name, AppsOf(n), now)).ToList();
            var traffic = state.IsTerminal ? default : await TrafficOfAsync(app.Name, state.Revision, spec.Rollout.ErrorRate.Window, now, ct);
            var next = RolloutPlanner.Advance(state, app.Name, spec.Rollout, reports, traffic, now);
            _current[app.Name] = next;
            if (saved is not null && next.ToJson().ToJsonString() == saved.ToJson().ToJsonString())
            {
                continue;
            }

            var moves = !next.AssignsLike(saved);
            try
            {
                await store.SaveRolloutAsync(app.Name, next, moves, leadership.Fence, ct, unchangedFrom: saved);
            }
            catch (StoreException e) when (e.Error == StoreError.Conflict && e.Kind == "Rollout")
            {
                // Another server paused or resumed it since it was read: evaluate again from what it saved.
                _current.TryRemove(app.Name, out _);
                LogSaveClashed(logger, app.Name, e.Message);
                Signal();
                continue;
            }

            var finished = next.IsTerminal && (saved is null || saved.Revision != next.Revision || saved.Phase != next.Phase);
            if (StepEvent(saved, next, targeted.Count, finished) is { } step)
            {
                await store.AppendEventAsync(new EventRecord(0, now, ResourceKind.Application.Kind, app.Name, "Normal", "RolloutStep", step), ct);
            }

            if (finished)
            {
                await store.SetRevisionOutcomeAsync(app.Name, next.Revision, next.Phase.ToString(), ct);
                var (type, reason) = next.Phase == RolloutPhase.Succeeded ? ("Normal", "RolloutSucceeded") : ("Warning", $"Rollout{next.Phase}");
                await store.AppendEventAsync(new EventRecord(0, now, ResourceKind.Application.Kind, app.Name, type, reason, $"revision {next.Revision}: {next.Message}"), ct);
                LogFinished(logger, app.Name, next.Revision, next.Phase, next.Message);
            }
        }
    }

    /// <summary>
    /// The event of a step that moved nodes to the new revision, or null when none moved: which
    /// nodes, in the order chosen, so `get events` tells how far a rollout went and when. A
    /// rollback is not a step (its own event says why).
    /// </summary>
    private static string? StepEvent(RolloutState? saved, RolloutState next, int targeted, bool finished)
    {
        if (next.StableRevision == 0 || (finished && next.Phase != RolloutPhase.Succeeded))
        {
            return null; // a new app goes everywhere at once: no steps
        }

        var before = saved?.Revision == next.Revision ? saved.Moved : [];
        var moved = next.Moved.Where(n => !before.Contains(n, StringComparer.Ordinal)).ToList();
        return moved.Count == 0 ? null : string.Create(System.Globalization.CultureInfo.InvariantCulture,
            $"revision {next.Revision} step {next.Step + 1} of {next.Steps}: moved {string.Join(", ", moved)} ({next.Moved.Count} of {targeted} nodes on revision {next.Revision})");
    }

    private NodeReport Report(StoredResource node, string app, Dictionary<string, NodeAppReport> apps, DateTimeOffset now)
    {
        var lease = leases.Get(node.Name);
        DateTimeOffset? beat = lease?.LastHeartbeat;
        var online = NodeState.Derive(lease?.Connected == true, beat, now, options.NodeLease) != NodeState.Offline;
        return apps.TryGetValue(app, out var entry)
            ? new NodeReport(node.Name, online, entry.State, entry.Generation, entry.FailedGeneration, entry.Message)
            : new NodeReport(node.Name, online, null, 0, 0, "");
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Rollout of app '{App}' revision {Revision} started from revision {Stable} ({Strategy})")]
    private static partial void LogStarted(ILogger logger, string app, long revision, long stable, string strategy);

    [LoggerMessage(Level = LogLevel.Information, Message = "Rollout of app '{App}' revision {Revision} {Phase}: {Message}")]
    private static partial void LogFinished(ILogger logger, string app, long revision, RolloutPhase phase, string message);

    [LoggerMessage(Level = LogLevel.Information, Message = "Rollout of app '{App}' revision {Revision} {What}")]
    private static partial void LogPaused(ILogger logger, string app, long revision, string what);

    [LoggerMessage(Level = LogLevel.Information, Message = "Rollout of app '{App}' was saved by another server meanwhile: {Reason}")]
    private static partial void LogSaveClashed(ILogger logger, string app, string reason);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Could not share traffic or read the rollouts the leader saved: {Reason}")]
    private static partial void LogFollowFailed(ILogger logger, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Rollout evaluation failed; retrying")]
    private static partial void LogEvaluationFailed(ILogger logger, Exception exception);
}
