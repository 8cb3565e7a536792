using System.Text.Json.Nodes;
using Outpost.Core.Manifests;
using Outpost.Core.Resources;
using Outpost.Core.Rollouts;

namespace Outpost.Core.Tests.Rollouts;

public sealed class RolloutPlannerTests
{
    private static readonly DateTimeOffset T0 = new(2026, 11, 26, 12, 0, 0, TimeSpan.Zero);
    private static readonly string[] FourNodes = ["edge-1", "edge-2", "edge-3", "edge-4"];

    private static RolloutSpec Spec(string json)
    {
        var errors = new List<FieldError>();
        var spec = RolloutSpec.Read(JsonNode.Parse(json), errors);
        Assert.Empty(errors);
        return spec;
    }

    private static List<FieldError> Errors(string json)
    {
        var errors = new List<FieldError>();
        RolloutSpec.Read(JsonNode.Parse(json), errors);
        return errors;
    }

    [Fact]
    public void Plan_CountsNodesPerStep_ForEachStrategy()
    {
        var canary = Spec("""{"strategy":"canary","steps":[{"percent":10,"pause":"30s"},{"percent":50,"pause":"1m"},{"percent":100}]}""");
        Assert.Equal([(1, TimeSpan.FromSeconds(30)), (2, TimeSpan.FromMinutes(1)), (4, TimeSpan.Zero)], canary.Plan(4));
        // A share that rounds to the same node count is one step; a final 100% is implied.
        Assert.Equal([(1, TimeSpan.FromSeconds(40))], Spec("""{"strategy":"canary","steps":[{"percent":10,"pause":"10s"},{"percent":20,"pause":"30s"}]}""").Plan(1));
        Assert.Equal([(1, TimeSpan.Zero), (3, TimeSpan.Zero)], Spec("""{"strategy":"canary","steps":[{"percent":25}]}""").Plan(3));
        Assert.Equal([2, 4, 6, 8, 10], Spec("""{"strategy":"rolling","maxUnavailable":"25%"}""").Plan(10).Select(s => s.Nodes));
        Assert.Equal([3, 6, 7], Spec("""{"strategy":"rolling","maxUnavailable":3}""").Plan(7).Select(s => s.Nodes));
        Assert.Equal([1, 2, 3], Spec("""{"strategy":"rolling","maxUnavailable":"10%"}""").Plan(3).Select(s => s.Nodes));
        Assert.Equal([5], RolloutSpec.Default.Plan(5).Select(s => s.Nodes));
    }

    [Fact]
    public void Read_NamesEveryBadField()
    {
        Assert.Contains(Errors("""{"strategy":"blue-green"}"""), e => e.Field == "spec.rollout.strategy" && e.Message.Contains("blue-green", StringComparison.Ordinal));
        Assert.Contains(Errors("""{"strategy":"canary"}"""), e => e.Field == "spec.rollout.steps" && e.Message.StartsWith("required", StringComparison.Ordinal));
        Assert.Contains(Errors("""{"strategy":"canary","steps":[{"percent":50},{"percent":20}]}"""), e => e.Field == "spec.rollout.steps[1].percent" && e.Message.Contains("must grow", StringComparison.Ordinal));
        Assert.Contains(Errors("""{"strategy":"canary","steps":[{"percent":150}]}"""), e => e.Field == "spec.rollout.steps[0].percent");
        Assert.Contains(Errors("""{"strategy":"canary","steps":[{"percent":10,"pause":"soon"}]}"""), e => e.Field == "spec.rollout.steps[0].pause");
        Assert.Contains(Errors("""{"strategy":"canary","steps":[{"percent":10}],"maxUnavailable":1}"""), e => e.Field == "spec.rollout.maxUnavailable" && e.Message.Contains("only to strategy rolling", StringComparison.Ordinal));
        Assert.Contains(Errors("""{"strategy":"rolling","maxUnavailable":"0%"}"""), e => e.Field == "spec.rollout.maxUnavailable");
        Assert.Contains(Errors("""{"errorRate":{"threshold":5}}"""), e => e.Field == "spec.rollout.errorRate.threshold");
        Assert.Contains(Errors("""{"autoRollback":"yes"}"""), e => e.Field == "spec.rollout.autoRollback");
        Assert.Contains(Errors("""{"errorRate":{"window":"2h"}}"""), e => e.Field == "spec.rollout.errorRate.window" && e.Message.StartsWith("at most 1h", StringComparison.Ordinal));
        Assert.Contains(Errors("""{"progresDeadline":"1m"}"""), e => e.Field == "spec.rollout.progresDeadline" && e.Message.StartsWith("unknown field", StringComparison.Ordinal));
        Assert.Empty(Errors("""{"strategy":"canary","steps":[{"percent":10,"pause":"30s"},{"percent":100}],"progressDeadline":"2m","autoRollback":false,"errorRate":{"threshold":0.05,"window":"30s","minRequests":5}}"""));
    }

    [Fact]
    public void Order_IsDeterministic_AndAJoiningNodeDoesNotReshuffleTheOthers()
    {
        var order = RolloutPlanner.Order("hello", FourNodes);
        Assert.Equal(order, RolloutPlanner.Order("hello", FourNodes.Reverse()));
        var grown = RolloutPlanner.Order("hello", [.. FourNodes, "edge-5"]);
        Assert.Equal(order, grown.Where(n => n != "edge-5"));
        Assert.NotEqual(order, RolloutPlanner.Order("other-app", FourNodes)); // each app spreads its canaries differently
    }

    private static List<NodeReport> Reports(Func<string, (string? State, long Generation)> report, bool online = true) =>
        [.. FourNodes.Select(n => new NodeReport(n, online, report(n).State, report(n).Generation, 0, ""))];

    [Fact]
    public void ANewAppWithNoNodeYet_SaysSo_InsteadOfRunningOnAllZeroNodes()
    {
        var state = RolloutPlanner.Start(null, 1, RolloutSpec.Default, 0, immediate: false, T0);
        var done = RolloutPlanner.Advance(state, "hello", RolloutSpec.Default, [], new TrafficSummary(0, 0), T0);

        Assert.Equal(RolloutPhase.Succeeded, done.Phase);
        Assert.Equal("revision 1 is current; no node is targeted yet (nodes that join or match later get it)", done.Message);
        var one = RolloutPlanner.Advance(RolloutPlanner.Start(null, 1, RolloutSpec.Default, 1, false, T0), "hello", RolloutSpec.Default,
            [new NodeReport("edge-1", true, "Ready", 1, 0, "")], new TrafficSummary(0, 0), T0);
        Assert.Equal("revision 1 runs on the 1 node", one.Message);
    }

    [Fact]
    public void Canary_MovesTheFirstNodes_WaitsForReadiness_PausesThenCompletes()
    {
        var spec = Spec("""{"strategy":"canary","steps":[{"percent":25,"pause":"30s"},{"percent":50},{"percent":100}]}""");
        var previous = new RolloutState { Revision = 1, StableRevision = 1, Phase = RolloutPhase.Succeeded };
        var state = RolloutPlanner.Start(previous, 2, spec, 4, immediate: false, T0);
        var order = RolloutPlanner.Order("hello", FourNodes);
        var running = FourNodes.ToDictionary(n => n, _ => 1L);
        (string?, long) Report(string n) => ("Ready", running[n]);

        state = RolloutPlanner.Advance(state, "hello", spec, Reports(Report), default, T0);
        Assert.Equal([order[0]], state.Moved);
        Assert.Equal(2, state.RevisionFor(order[0]));
        Assert.Equal(1, state.RevisionFor(order[1]));
        Assert.Contains("waiting for " + order[0], state.Message, StringComparison.Ordinal);

        running[order[0]] = 2; // the canary reports the revision ready: the pause starts
        state = RolloutPlanner.Advance(state, "hello", spec, Reports(Report), default, T0.AddSeconds(1));
        Assert.Equal(0, state.Step);
        Assert.Contains("pausing until", state.Message, StringComparison.Ordinal);
        state = RolloutPlanner.Advance(state, "hello", spec, Reports(Report), default, T0.AddSeconds(20));
        Assert.Equal(0, state.Step);
        state = RolloutPlanner.Advance(state, "hello", spec, Reports(Report), default, T0.AddSeconds(32));
        Assert.Equal(1, state.Step);
        state = RolloutPlanner.Advance(state, "hello", spec, Reports(Report), default, T0.AddSeconds(33));
        Assert.True(state.Moved.Count == 2, state.ToJson().ToJsonString());
        Assert.Equal(order.Take(2), state.Moved);

        foreach (var n in order.Take(2)) { running[n] = 2; }
        state = RolloutPlanner.Advance(state, "hello", spec, Reports(Report), default, T0.AddSeconds(34));
        state = RolloutPlanner.Advance(state, "hello", spec, Reports(Report), default, T0.AddSeconds(35));
        Assert.Equal(order, state.Moved);
        foreach (var n in order) { running[n] = 2; }
        state = RolloutPlanner.Advance(state, "hello", spec, Reports(Report), default, T0.AddSeconds(36));
        Assert.Equal(RolloutPhase.Succeeded, state.Phase);
        Assert.All(FourNodes, n => Assert.Equal(2, state.RevisionFor(n)));
    }

    [Fact]
    public void AFailedCanary_RollsEveryMovedNodeBack_AndNoOtherNodeEverGetsTheRevision()
    {
        var spec = Spec("""{"strategy":"canary","steps":[{"percent":50,"pause":"1m"}]}""");
        var state = RolloutPlanner.Start(new RolloutState { Revision = 3, StableRevision = 3, Phase = RolloutPhase.Succeeded }, 4, spec, 4, false, T0);
        state = RolloutPlanner.Advance(state, "hello", spec, Reports(_ => ("Ready", 3)), default, T0);
        var canaries = state.Moved.ToHashSet();
        Assert.Equal(2, canaries.Count);
        state = RolloutPlanner.Advance(state, "hello", spec, Reports(n => canaries.Contains(n) ? ("Failed", 4) : ("Ready", 3)), default, T0.AddSeconds(1));
        Assert.Equal(RolloutPhase.RolledBack, state.Phase);
        Assert.Contains("failed revision 4", state.Message, StringComparison.Ordinal);
        Assert.All(FourNodes, n => Assert.Equal(3, state.RevisionFor(n)));
        // Terminal: nothing moves any more.
        Assert.Same(state, RolloutPlanner.Advance(state, "hello", spec, Reports(_ => ("Ready", 3)), default, T0.AddMinutes(5)));
    }

    [Fact]
    public void TheErrorRateGate_RollsBack_OrHaltsWithoutAutoRollback()
    {
        var spec = Spec("""{"errorRate":{"threshold":0.1,"window":"30s","minRequests":20}}""");
        var start = RolloutPlanner.Start(new RolloutState { Revision = 1, StableRevision = 1, Phase = RolloutPhase.Succeeded }, 2, spec, 4, false, T0);
        var moving = RolloutPlanner.Advance(start, "hello", spec, Reports(_ => ("Ready", 1)), default, T0);
        // Below the minimum count, or at the threshold: no verdict.
        Assert.Equal(RolloutPhase.Succeeded, RolloutPlanner.Advance(moving, "hello", spec, Reports(_ => ("Ready", 2)), new TrafficSummary(19, 19), T0).Phase);
        Assert.Equal(RolloutPhase.Succeeded, RolloutPlanner.Advance(moving, "hello", spec, Reports(_ => ("Ready", 2)), new TrafficSummary(100, 10), T0).Phase);
        var failed = RolloutPlanner.Advance(moving, "hello", spec, Reports(_ => ("Ready", 2)), new TrafficSummary(100, 11), T0);
        Assert.Equal(RolloutPhase.RolledBack, failed.Phase);
        Assert.Contains("11 of 100 requests answered 5xx", failed.Message, StringComparison.Ordinal);

        var manual = spec with { AutoRollback = false };
        var halted = RolloutPlanner.Advance(moving, "hello", manual, Reports(_ => ("Ready", 2)), new TrafficSummary(50, 50), T0);
        Assert.Equal(RolloutPhase.Failed, halted.Phase);
        Assert.All(FourNodes, n => Assert.Equal(2, halted.RevisionFor(n))); // halted where it was
    }

    [Fact]
    public void AStepPastItsProgressDeadline_Fails_ButOfflineNodesDoNotHoldItUp()
    {
        var spec = Spec("""{"progressDeadline":"1m"}""");
        var state = RolloutPlanner.Start(new RolloutState { Revision = 1, StableRevision = 1, Phase = RolloutPhase.Succeeded }, 2, spec, 4, false, T0);
        state = RolloutPlanner.Advance(state, "hello", spec, Reports(_ => ("Ready", 1)), default, T0);
        var late = RolloutPlanner.Advance(state, "hello", spec, Reports(_ => ("Ready", 1)), default, T0.AddSeconds(61));
        Assert.Equal(RolloutPhase.RolledBack, late.Phase);
        Assert.Contains("progress deadline of 1m", late.Message, StringComparison.Ordinal);

        var reports = Reports(n => n == "edge-4" ? ("Ready", 1) : ("Ready", 2));
        reports[3] = reports[3] with { Online = false };
        var done = RolloutPlanner.Advance(state, "hello", spec, reports, default, T0.AddSeconds(5));
        Assert.Equal(RolloutPhase.Succeeded, done.Phase);
        Assert.Contains("1 offline", done.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Pause_HoldsTheNodesWhereTheyAre_AndResumeContinues()
    {
        var spec = Spec("""{"strategy":"rolling","maxUnavailable":1}""");
        var state = RolloutPlanner.Start(new RolloutState { Revision = 1, StableRevision = 1, Phase = RolloutPhase.Succeeded }, 2, spec, 4, false, T0);
        state = RolloutPlanner.Advance(state, "hello", spec, Reports(_ => ("Ready", 1)), default, T0);
        Assert.Single(state.Moved);
        state = RolloutPlanner.Pause(state, T0);
        var ready = Reports(n => state.Moved.Contains(n) ? ("Ready", 2) : ("Ready", 1));
        for (var i = 1; i < 5; i++)
        {
            state = RolloutPlanner.Advance(state, "hello", spec, ready, default, T0.AddMinutes(i * 5)); // long past the deadline: a pause stops the clock
            Assert.Equal(RolloutPhase.Paused, state.Phase);
            Assert.Single(state.Moved);
        }

        state = RolloutPlanner.Resume(state, T0.AddMinutes(30));
        state = RolloutPlanner.Advance(state, "hello", spec, ready, default, T0.AddMinutes(30));
        state = RolloutPlanner.Advance(state, "hello", spec, ready, default, T0.AddMinutes(30));
        Assert.Equal(RolloutPhase.Progressing, state.Phase);
        Assert.Equal(2, state.Moved.Count);
        // A new revision applied while paused starts paused.
        Assert.Equal(RolloutPhase.Paused, RolloutPlanner.Start(RolloutPlanner.Pause(state, T0), 3, spec, 4, false, T0).Phase);
    }

    [Fact]
    public void Undo_GoesToEveryNodeAtOnce_AndANewAppHasNothingToRollBackTo()
    {
        var spec = Spec("""{"strategy":"canary","steps":[{"percent":10,"pause":"1h"}]}""");
        var progressing = new RolloutState { Revision = 5, StableRevision = 4, Moved = ["edge-1"] };
        var undo = RolloutPlanner.Start(progressing, 6, spec, 4, immediate: true, T0);
        Assert.Equal(4, undo.StableRevision); // the last revision that reached every node
        undo = RolloutPlanner.Advance(undo, "hello", spec, Reports(_ => ("Ready", 4)), default, T0);
        Assert.Equal(4, undo.Moved.Count);
        Assert.Equal("undo", (string?)undo.ToJson()["strategy"]);
        Assert.Equal(undo.Moved, RolloutState.FromJson(undo.ToJson()).Moved);

        var created = RolloutPlanner.Start(null, 1, spec, 4, immediate: false, T0);
        Assert.All(FourNodes, n => Assert.Equal(1, created.RevisionFor(n)));
        var broken = RolloutPlanner.Advance(created, "hello", spec, Reports(_ => ("Failed", 1)), default, T0);
        Assert.Equal(RolloutPhase.Failed, broken.Phase);
        Assert.Contains("no earlier revision", broken.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ANodeRollingBackOnItsOwn_AfterSuccess_RollsTheFleetBackWithinTheProgressDeadline()
    {
        var spec = Spec("""{"progressDeadline":"5m"}""");
        var state = RolloutPlanner.Start(new RolloutState { Revision = 1, StableRevision = 1, Phase = RolloutPhase.Succeeded }, 2, spec, 4, false, T0);
        state = RolloutPlanner.Advance(state, "hello", spec, Reports(_ => ("Ready", 1)), default, T0);
        state = RolloutPlanner.Advance(state, "hello", spec, Reports(_ => ("Ready", 2)), default, T0.AddSeconds(1));
        Assert.Equal(RolloutPhase.Succeeded, state.Phase);

        List<NodeReport> OneRolledBack() => [.. Reports(_ => ("Ready", 2)).Select(r => r.Node == "edge-3" ? r with { State = "RolledBack", Generation = 1, FailedGeneration = 2, Message = "error rate 100%" } : r)];
        Assert.Equal(RolloutPhase.Succeeded, RolloutPlanner.Advance(state, "hello", spec, OneRolledBack(), default, T0.AddMinutes(7)).Phase); // past the deadline: the node's own business
        var back = RolloutPlanner.Advance(state, "hello", spec, OneRolledBack(), default, T0.AddMinutes(4));
        Assert.Equal(RolloutPhase.RolledBack, back.Phase);
        Assert.Contains("node edge-3 rolled revision 2 back: error rate 100%", back.Message, StringComparison.Ordinal);
        Assert.All(FourNodes, n => Assert.Equal(1, back.RevisionFor(n)));
    }
}
