using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using Outpost.Core.Resources;

namespace Outpost.Core.Rollouts;

/// <summary>
/// What a node last reported about one app. Online is false once the node's lease expired
/// (it cannot report, so it does not hold a step up); State is Ready, Failed, RolledBack or null;
/// Generation the revision it serves (when Failed, the one that failed); FailedGeneration a
/// revision it rolled back from on its own (0 for none).
/// </summary>
public sealed record NodeReport(string Node, bool Online, string? State, long Generation, long FailedGeneration, string Message);

/// <summary>5xx answers among requests served by the revision being rolled out, over the gate's window.</summary>
public readonly record struct TrafficSummary(long Requests, long ServerErrors);

/// <summary>
/// The rollout state machine, free of I/O: where a new revision starts, and one step of
/// progress given what the nodes report. Nodes are chosen in a deterministic order
/// (rendezvous hashing of app and node names): the same nodes go first every time, and a
/// node joining or leaving does not reshuffle the others.
/// </summary>
public static class RolloutPlanner
{
    /// <summary>The order in which an app's nodes receive a new revision.</summary>
    public static IReadOnlyList<string> Order(string app, IEnumerable<string> nodes)
    {
        ArgumentNullException.ThrowIfNull(nodes);
        return [.. nodes.OrderBy(n => Rank(app, n)).ThenBy(n => n, StringComparer.Ordinal)];
    }

    private static ulong Rank(string app, string node)
    {
        Span<byte> hash = stackalloc byte[32];
        SHA256.HashData(Encoding.UTF8.GetBytes(app + "\n" + node), hash);
        return System.Buffers.Binary.BinaryPrimitives.ReadUInt64BigEndian(hash);
    }

    /// <summary>
    /// A rollout of <paramref name="generation"/>. Nodes keep what the previous rollout left as
    /// stable: its revision when it succeeded, else its own stable revision. A new app has no
    /// stable revision and goes to every node at once.
    /// </summary>
    public static RolloutState Start(RolloutState? previous, long generation, RolloutSpec spec, int nodes, bool immediate, DateTimeOffset now)
    {
        ArgumentNullException.ThrowIfNull(spec);
        var stable = previous is null ? 0
            : previous.Phase == RolloutPhase.Succeeded ? previous.Revision
            : previous.StableRevision > 0 ? previous.StableRevision
            : previous.Revision;
        immediate |= stable == 0;
        return new RolloutState
        {
            Revision = generation,
            StableRevision = stable,
            Strategy = immediate ? RolloutStrategy.AllAtOnce : spec.Strategy,
            Immediate = immediate && stable != 0,
            Steps = immediate ? 1 : spec.Plan(nodes).Count,
            Paused = previous?.Paused ?? false,
            Phase = previous?.Paused == true ? RolloutPhase.Paused : RolloutPhase.Progressing,
            StartedAt = now,
            StepStartedAt = now,
            Message = stable == 0 ? "new app: every node at once" : $"from revision {stable}",
        };
    }

    /// <summary>One evaluation, given the app's nodes now and their reports: checks the gates, then moves the step's nodes or the step on.</summary>
    public static RolloutState Advance(RolloutState state, string app, RolloutSpec spec, IReadOnlyList<NodeReport> nodes, TrafficSummary traffic, DateTimeOffset now)
    {
        ArgumentNullException.ThrowIfNull(state);
        ArgumentNullException.ThrowIfNull(spec);
        ArgumentNullException.ThrowIfNull(nodes);
        var reports = nodes.ToDictionary(n => n.Node, StringComparer.Ordinal);
        if (state.Phase is RolloutPhase.RolledBack or RolloutPhase.Failed)
        {
            return state;
        }

        // Gates first, paused or not, and for a progress deadline after success too: nodes keep a
        // new revision on probation that long, and one that rolls it back then (offline even,
        // telling the server when it reconnects) rolls the fleet back.
        if (state.Phase == RolloutPhase.Succeeded && (state.FinishedAt is not { } finished || now - finished > spec.ProgressDeadline))
        {
            return state;
        }

        if (Gate(state, spec, reports, traffic) is { } failure)
        {
            return Fail(state, spec, failure, now);
        }

        if (state.Phase == RolloutPhase.Succeeded)
        {
            return state;
        }

        var moved = state.Moved.Where(reports.ContainsKey).ToList();
        if (state.Paused)
        {
            return state with { Phase = RolloutPhase.Paused, Moved = moved, Message = $"paused at step {state.Step + 1} of {state.Steps}: `outpost rollout resume` continues" };
        }

        var plan = state.Immediate ? [(nodes.Count, TimeSpan.Zero)] : spec.Plan(nodes.Count);
        var step = Math.Min(state.Step, plan.Count - 1);
        var (want, pause) = plan[step];
        foreach (var name in Order(app, reports.Keys))
        {
            if (moved.Count >= want)
            {
                break;
            }

            if (!moved.Contains(name, StringComparer.Ordinal))
            {
                moved.Add(name);
            }
        }

        var next = state with { Phase = RolloutPhase.Progressing, Moved = moved, Steps = plan.Count, Step = step };
        var waiting = moved.Where(n => reports[n].Online && !(reports[n].State == "Ready" && reports[n].Generation == state.Revision)).ToList();
        if (waiting.Count > 0)
        {
            if (now - state.StepStartedAt > spec.ProgressDeadline)
            {
                return Fail(next, spec, $"step {step + 1} of {plan.Count}: {Names(waiting)} did not report revision {state.Revision} ready within the progress deadline of {Describe(spec.ProgressDeadline)}", now);
            }

            return next with { Message = $"step {step + 1} of {plan.Count}: {moved.Count - waiting.Count} of {moved.Count} nodes ready at revision {state.Revision}, waiting for {Names(waiting)}" };
        }

        var readyAt = state.StepReadyAt ?? now;
        var offline = moved.Count(n => !reports[n].Online);
        var note = offline > 0 ? $" ({offline} offline: they switch when they reconnect)" : "";
        if (now < readyAt + pause)
        {
            return next with { StepReadyAt = readyAt, Message = $"step {step + 1} of {plan.Count}: {moved.Count} of {nodes.Count} nodes at revision {state.Revision}{note}; pausing until {readyAt + pause:HH:mm:ss}" };
        }

        if (step + 1 >= plan.Count)
        {
            return next with
            {
                Phase = RolloutPhase.Succeeded,
                StepReadyAt = readyAt,
                FinishedAt = now,
                Message = nodes.Count switch
                {
                    0 => $"revision {state.Revision} is current; no node is targeted yet (nodes that join or match later get it)",
                    1 => $"revision {state.Revision} runs on the 1 node{note}",
                    _ => $"revision {state.Revision} runs on all {nodes.Count} nodes{note}",
                },
            };
        }

        return next with { Step = step + 1, StepStartedAt = now, StepReadyAt = null, Message = $"step {step + 1} of {plan.Count} done; starting step {step + 2}" };
    }

    /// <summary>Why the revision fails its gates on the nodes running it, or null when it passes.</summary>
    private static string? Gate(RolloutState state, RolloutSpec spec, Dictionary<string, NodeReport> reports, TrafficSummary traffic)
    {
        foreach (var name in reports.Keys.Where(n => state.RevisionFor(n) == state.Revision).Order(StringComparer.Ordinal))
        {
            var report = reports[name];
            if (report.FailedGeneration == state.Revision)
            {
                return $"node {name} rolled revision {state.Revision} back: {report.Message}";
            }

            if (report.State == "Failed" && report.Generation == state.Revision)
            {
                return $"node {name} failed revision {state.Revision}: {report.Message}";
            }
        }

        if (spec.ErrorRate.Trips(traffic.Requests, traffic.ServerErrors))
        {
            var rate = (double)traffic.ServerErrors / traffic.Requests;
            return string.Create(CultureInfo.InvariantCulture,
                $"error rate {100 * rate:0}% ({traffic.ServerErrors} of {traffic.Requests} requests answered 5xx over {Describe(spec.ErrorRate.Window)}) is above {100 * spec.ErrorRate.Threshold:0.##}%");
        }

        return null;
    }

    /// <summary>Holds the rollout where it is (`outpost rollout pause`; gates keep watching), or, when none is in progress, the next one before its first step.</summary>
    public static RolloutState Pause(RolloutState state, DateTimeOffset now)
    {
        ArgumentNullException.ThrowIfNull(state);
        return state.Paused ? state
            : state.IsTerminal ? state with { Paused = true } // the next revision starts paused
            : state with { Paused = true, Phase = RolloutPhase.Paused, Message = $"paused at step {state.Step + 1} of {state.Steps} at {now:HH:mm:ss}" };
    }

    /// <summary>Continues a paused rollout; the step's progress deadline starts again.</summary>
    public static RolloutState Resume(RolloutState state, DateTimeOffset now)
    {
        ArgumentNullException.ThrowIfNull(state);
        return !state.Paused ? state
            : state.IsTerminal ? state with { Paused = false }
            : state with { Paused = false, Phase = RolloutPhase.Progressing, StepStartedAt = now, Message = $"resumed at {now:HH:mm:ss}" };
    }

    private static RolloutState Fail(RolloutState state, RolloutSpec spec, string reason, DateTimeOffset now) =>
        spec.AutoRollback && state.StableRevision > 0
            ? state with { Phase = RolloutPhase.RolledBack, Moved = [], FinishedAt = now, Message = $"{reason}; every node is back on revision {state.StableRevision}" }
            : state with
            {
                Phase = RolloutPhase.Failed,
                FinishedAt = now,
                Message = state.StableRevision > 0 ? $"{reason}; halted (autoRollback is off)" : $"{reason}; halted (no earlier revision to go back to)",
            };

    private static string Names(List<string> nodes) =>
        nodes.Count <= 3 ? string.Join(", ", nodes) : $"{string.Join(", ", nodes.Take(3))} and {nodes.Count - 3} more";

    /// <summary>A span as manifests write it: 90s, 5m, 2h.</summary>
    public static string Describe(TimeSpan span) =>
        span.TotalSeconds < 1 ? $"{span.TotalMilliseconds:0}ms"
        : span.TotalMinutes < 2 && span.Seconds != 0 || span.TotalMinutes < 1 ? $"{span.TotalSeconds:0}s"
        : span.TotalHours < 2 && span.Minutes != 0 || span.TotalHours < 1 ? $"{span.TotalMinutes:0}m"
        : $"{span.TotalHours:0}h";
}
