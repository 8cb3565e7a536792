using System.Globalization;
using System.Text.Json.Nodes;
using Outpost.Core.Resources;

namespace Outpost.Core.Rollouts;

public enum RolloutPhase
{
    /// <summary>Moving nodes to the revision, step by step.</summary>
    Progressing,

    /// <summary>Held by `outpost rollout pause`: no node moves, gates still watch.</summary>
    Paused,

    /// <summary>Every node of the app runs the revision.</summary>
    Succeeded,

    /// <summary>A gate failed and every node went back to the stable revision.</summary>
    RolledBack,

    /// <summary>A gate failed with autoRollback off (or nothing to go back to): halted where it was.</summary>
    Failed,
}

/// <summary>
/// Where an Application's latest revision stands on its nodes. The nodes in <see cref="Moved"/>
/// run <see cref="Revision"/>; every other node keeps <see cref="StableRevision"/>, the last
/// revision that reached every node.
/// </summary>
public sealed record RolloutState
{
    /// <summary>The revision being rolled out (the app's generation when the rollout started).</summary>
    public required long Revision { get; init; }

    /// <summary>What nodes not yet moved run, and what a failed rollout goes back to; 0 when there is none (a new app).</summary>
    public long StableRevision { get; init; }

    public RolloutPhase Phase { get; init; } = RolloutPhase.Progressing;

    public RolloutStrategy Strategy { get; init; }

    /// <summary>An undo: every node at once, whatever the app's strategy says.</summary>
    public bool Immediate { get; init; }

    /// <summary>The step in progress, from 0.</summary>
    public int Step { get; init; }

    public int Steps { get; init; } = 1;

    /// <summary>The nodes running <see cref="Revision"/>, in the order they were chosen.</summary>
    public IReadOnlyList<string> Moved { get; init; } = [];

    /// <summary>Held by `outpost rollout pause`.</summary>
    public bool Paused { get; init; }

    public DateTimeOffset StartedAt { get; init; }

    public DateTimeOffset StepStartedAt { get; init; }

    /// <summary>When every moved node of this step reported the revision ready; the step's pause counts from here.</summary>
    public DateTimeOffset? StepReadyAt { get; init; }

    public DateTimeOffset? FinishedAt { get; init; }

    public string Message { get; init; } = "";

    public bool IsTerminal => Phase is RolloutPhase.Succeeded or RolloutPhase.RolledBack or RolloutPhase.Failed;

    /// <summary>The revision a node of this app runs.</summary>
    public long RevisionFor(string node) => Phase switch
    {
        RolloutPhase.Succeeded => Revision,
        RolloutPhase.RolledBack => StableRevision > 0 ? StableRevision : Revision,
        _ => StableRevision == 0 || Moved.Contains(node, StringComparer.Ordinal) ? Revision : StableRevision,
    };

    /// <summary>True when every node runs the same revision under <paramref name="other"/> as under this state.</summary>
    public bool AssignsLike(RolloutState? other) => other is not null && other.Assignment == Assignment;

    private string Assignment => Phase switch
    {
        RolloutPhase.Succeeded => $"all:{Revision}",
        RolloutPhase.RolledBack => $"all:{(StableRevision > 0 ? StableRevision : Revision)}",
        _ => StableRevision == 0 ? $"all:{Revision}" : $"{Revision}/{StableRevision}:{string.Join(',', Moved)}",
    };

    public JsonObject ToJson()
    {
        var json = new JsonObject
        {
            ["revision"] = Revision,
            ["stableRevision"] = StableRevision,
            ["phase"] = Phase.ToString(),
            ["strategy"] = Immediate ? "undo" : Format(Strategy),
            ["step"] = Step,
            ["steps"] = Steps,
            ["moved"] = new JsonArray([.. Moved.Select(n => (JsonNode)n)]),
            ["paused"] = Paused,
            ["startedAt"] = Timestamp(StartedAt),
            ["stepStartedAt"] = Timestamp(StepStartedAt),
            ["message"] = Message,
        };
        if (StepReadyAt is { } ready)
        {
            json["stepReadyAt"] = Timestamp(ready);
        }

        if (FinishedAt is { } finished)
        {
            json["finishedAt"] = Timestamp(finished);
        }

        return json;
    }

    public static RolloutState FromJson(JsonObject json)
    {
        ArgumentNullException.ThrowIfNull(json);
        var strategy = (string?)json["strategy"] ?? "allAtOnce";
        return new RolloutState
        {
            Revision = (long)json["revision"]!,
            StableRevision = (long?)json["stableRevision"] ?? 0,
            Phase = Enum.Parse<RolloutPhase>((string?)json["phase"] ?? nameof(RolloutPhase.Progressing)),
            Strategy = strategy switch { "rolling" => RolloutStrategy.Rolling, "canary" => RolloutStrategy.Canary, _ => RolloutStrategy.AllAtOnce },
            Immediate = strategy == "undo",
            Step = (int?)json["step"] ?? 0,
            Steps = (int?)json["steps"] ?? 1,
            Moved = (json["moved"] as JsonArray)?.Select(n => (string)n!).ToArray() ?? [],
            Paused = (bool?)json["paused"] ?? false,
            StartedAt = Parse(json["startedAt"]) ?? default,
            StepStartedAt = Parse(json["stepStartedAt"]) ?? default,
            StepReadyAt = Parse(json["stepReadyAt"]),
            FinishedAt = Parse(json["finishedAt"]),
            Message = (string?)json["message"] ?? "",
        };
    }

    public static string Format(RolloutStrategy strategy) => strategy switch
    {
        RolloutStrategy.Rolling => "rolling",
        RolloutStrategy.Canary => "canary",
        _ => "allAtOnce",
    };

    private static string Timestamp(DateTimeOffset at) => at.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture);

    private static DateTimeOffset? Parse(JsonNode? node) =>
        node is JsonValue v && DateTimeOffset.TryParse((string?)v, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var at) ? at : null;
}
