using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Outpost.Core.Manifests;

namespace Outpost.Core.Resources;

/// <summary>How a new revision of an Application reaches its nodes.</summary>
public enum RolloutStrategy
{
    /// <summary>Every node at once (still gated: a failing revision is rolled back).</summary>
    AllAtOnce,

    /// <summary>Batches of at most maxUnavailable nodes, each batch healthy before the next.</summary>
    Rolling,

    /// <summary>Steps of a growing share of the nodes, each healthy (and paused) before the next.</summary>
    Canary,
}

/// <summary>One canary step: this share of the app's nodes, then a pause once they are healthy.</summary>
public sealed record RolloutStep(int Percent, TimeSpan Pause);

/// <summary>
/// The error-rate gate: more than <paramref name="Threshold"/> of the requests answered 5xx, over
/// <paramref name="Window"/>, with at least <paramref name="MinRequests"/> requests seen, fails the revision.
/// </summary>
public sealed record ErrorRateGate(double Threshold, TimeSpan Window, int MinRequests)
{
    public static readonly ErrorRateGate Default = new(0.1, TimeSpan.FromMinutes(1), 20);

    /// <summary>True when these counts cross the gate.</summary>
    public bool Trips(long requests, long serverErrors) =>
        requests >= MinRequests && requests > 0 && (double)serverErrors / requests > Threshold;
}

/// <summary>
/// The typed view of spec.rollout, with every field defaulted: all at once, rolled back
/// automatically, a 10-minute progress deadline and a 10% error-rate gate over a minute.
/// </summary>
public sealed record RolloutSpec
{
    // Declared before Default, which reads it.
    public static readonly TimeSpan DefaultProgressDeadline = TimeSpan.FromMinutes(10);

    public static readonly RolloutSpec Default = new();

    /// <summary>The longest error-rate window (the traffic history the server keeps).</summary>
    public static readonly TimeSpan MaxWindow = TimeSpan.FromHours(1);

    private static readonly string[] Fields = ["strategy", "maxUnavailable", "steps", "progressDeadline", "autoRollback", "errorRate"];
    private static readonly string[] Strategies = ["allAtOnce", "rolling", "canary"];

    public RolloutStrategy Strategy { get; init; } = RolloutStrategy.AllAtOnce;

    /// <summary>For rolling: a count ("2") or a share of the nodes ("25%"). Default 25%.</summary>
    public string MaxUnavailable { get; init; } = "25%";

    /// <summary>For canary: the steps as written (a final 100% step is implied).</summary>
    public IReadOnlyList<RolloutStep> Steps { get; init; } = [];

    /// <summary>How long moved nodes may take to report the revision healthy, per step; also how long a node watches a new revision's error rate.</summary>
    public TimeSpan ProgressDeadline { get; init; } = DefaultProgressDeadline;

    public bool AutoRollback { get; init; } = true;

    public ErrorRateGate ErrorRate { get; init; } = ErrorRateGate.Default;

    /// <summary>
    /// How many of <paramref name="nodes"/> run the new revision at the end of each step, and the
    /// pause after it: one step for allAtOnce, batches for rolling, the canary steps (rounded up,
    /// at least one node) ending with every node.
    /// </summary>
    public IReadOnlyList<(int Nodes, TimeSpan Pause)> Plan(int nodes)
    {
        if (nodes <= 0)
        {
            return [(0, TimeSpan.Zero)];
        }

        var plan = new List<(int Nodes, TimeSpan Pause)>();
        switch (Strategy)
        {
            case RolloutStrategy.Rolling:
                var batch = Math.Max(1, MaxUnavailable.EndsWith('%')
                    ? nodes * int.Parse(MaxUnavailable[..^1], CultureInfo.InvariantCulture) / 100
                    : int.Parse(MaxUnavailable, CultureInfo.InvariantCulture));
                for (var moved = Math.Min(batch, nodes); ; moved = Math.Min(moved + batch, nodes))
                {
                    plan.Add((moved, TimeSpan.Zero));
                    if (moved == nodes)
                    {
                        break;
                    }
                }

                break;
            case RolloutStrategy.Canary:
                foreach (var step in Steps)
                {
                    var count = Math.Clamp((int)Math.Ceiling(nodes * step.Percent / 100.0), 1, nodes);
                    if (plan.Count > 0 && plan[^1].Nodes == count)
                    {
                        plan[^1] = (count, plan[^1].Pause + step.Pause); // the same nodes: one step, both pauses
                        continue;
                    }

                    plan.Add((count, step.Pause));
                }

                if (plan.Count == 0 || plan[^1].Nodes < nodes)
                {
                    plan.Add((nodes, TimeSpan.Zero));
                }

                break;
            default:
                plan.Add((nodes, TimeSpan.Zero));
                break;
        }

        return plan;
    }

    /// <summary>Reads spec.rollout (null: the defaults), adding a precise error per bad field when <paramref name="errors"/> is given.</summary>
    public static RolloutSpec Read(JsonNode? node, List<FieldError>? errors = null)
    {
        const string at = "spec.rollout";
        errors ??= [];
        if (node is null)
        {
            return Default;
        }

        if (node is not JsonObject rollout)
        {
            errors.Add(new(at, $"expected an object with strategy, steps, progressDeadline, autoRollback, errorRate; got a {node.GetValueKind().ToString().ToLowerInvariant()}"));
            return Default;
        }

        foreach (var (key, _) in rollout)
        {
            if (!Fields.Contains(key, StringComparer.Ordinal))
            {
                errors.Add(new($"{at}.{key}", $"unknown field; expected one of: {string.Join(", ", Fields)}"));
            }
        }

        var spec = Default;
        var strategy = SpecFields.String(rollout["strategy"], $"{at}.strategy", errors) ?? "allAtOnce";
        var index = Array.IndexOf(Strategies, strategy);
        if (index < 0)
        {
            errors.Add(new($"{at}.strategy", $"unknown strategy '{strategy}'; expected one of: {string.Join(", ", Strategies)}"));
        }
        else
        {
            spec = spec with { Strategy = (RolloutStrategy)index };
        }

        if (rollout["maxUnavailable"] is { } maxNode)
        {
            var text = maxNode is JsonValue mv && mv.GetValueKind() == JsonValueKind.Number ? mv.ToJsonString() : SpecFields.String(maxNode, $"{at}.maxUnavailable", errors);
            var share = text is not null && text.EndsWith('%');
            if (text is null || !int.TryParse(share ? text[..^1] : text, NumberStyles.None, CultureInfo.InvariantCulture, out var n) || n < 1 || (share && n > 100))
            {
                errors.Add(new($"{at}.maxUnavailable", $"expected a node count (1 or more) or a share like \"25%\" (1-100%), got {maxNode.ToJsonString()}"));
            }
            else
            {
                spec = spec with { MaxUnavailable = text };
            }

            if (spec.Strategy != RolloutStrategy.Rolling)
            {
                errors.Add(new($"{at}.maxUnavailable", $"applies only to strategy rolling (this rollout is {strategy})"));
            }
        }

        if (rollout["steps"] is { } stepsNode)
        {
            spec = spec with { Steps = ReadSteps(stepsNode, $"{at}.steps", errors) };
            if (spec.Strategy != RolloutStrategy.Canary)
            {
                errors.Add(new($"{at}.steps", $"applies only to strategy canary (this rollout is {strategy})"));
            }
        }
        else if (spec.Strategy == RolloutStrategy.Canary)
        {
            errors.Add(new($"{at}.steps", "required for strategy canary: a list like [{percent: 10, pause: 30s}, {percent: 100}]"));
        }

        if (rollout["progressDeadline"] is { } deadlineNode)
        {
            if (SpecFields.Duration(deadlineNode, $"{at}.progressDeadline", errors) is { } deadline)
            {
                spec = spec with { ProgressDeadline = deadline };
            }
        }

        if (rollout["autoRollback"] is { } autoNode)
        {
            if (autoNode is JsonValue av && av.GetValueKind() is JsonValueKind.True or JsonValueKind.False)
            {
                spec = spec with { AutoRollback = av.GetValue<bool>() };
            }
            else
            {
                errors.Add(new($"{at}.autoRollback", $"expected true or false, got {autoNode.ToJsonString()}"));
            }
        }

        if (rollout["errorRate"] is { } gateNode)
        {
            spec = spec with { ErrorRate = ReadGate(gateNode, $"{at}.errorRate", errors) };
        }

        return spec;
    }

    private static List<RolloutStep> ReadSteps(JsonNode node, string at, List<FieldError> errors)
    {
        var steps = new List<RolloutStep>();
        if (node is not JsonArray array || array.Count == 0)
        {
            errors.Add(new(at, "expected a non-empty list of steps like {percent: 10, pause: 30s}"));
            return steps;
        }

        var previous = 0;
        for (var i = 0; i < array.Count; i++)
        {
            var field = $"{at}[{i}]";
            if (array[i] is not JsonObject step)
            {
                errors.Add(new(field, "expected an object with percent and an optional pause"));
                continue;
            }

            foreach (var (key, _) in step)
            {
                if (key is not ("percent" or "pause"))
                {
                    errors.Add(new($"{field}.{key}", "unknown field; expected percent or pause"));
                }
            }

            var percent = SpecFields.Int(step["percent"]);
            if (percent is null or < 1 or > 100)
            {
                errors.Add(new($"{field}.percent", step["percent"] is null ? "required field is missing: the share of nodes, 1-100" : $"expected a whole number from 1 to 100, got {step["percent"]!.ToJsonString()}"));
                continue;
            }

            if (percent <= previous)
            {
                errors.Add(new($"{field}.percent", $"steps must grow: {percent} does not exceed the previous step's {previous}"));
            }

            previous = percent.Value;
            var pause = step["pause"] is { } pauseNode ? SpecFields.Duration(pauseNode, $"{field}.pause", errors) ?? TimeSpan.Zero : TimeSpan.Zero;
            steps.Add(new RolloutStep(percent.Value, pause));
        }

        return steps;
    }

    private static ErrorRateGate ReadGate(JsonNode node, string at, List<FieldError> errors)
    {
        var gate = ErrorRateGate.Default;
        if (node is not JsonObject obj)
        {
            errors.Add(new(at, "expected an object with threshold, window and minRequests"));
            return gate;
        }

        foreach (var (key, _) in obj)
        {
            if (key is not ("threshold" or "window" or "minRequests"))
            {
                errors.Add(new($"{at}.{key}", "unknown field; expected threshold, window or minRequests"));
            }
        }

        if (obj["threshold"] is { } thresholdNode
            && SpecFields.Number(thresholdNode, $"{at}.threshold", 0, 1, "the share of requests answered 5xx that fails a revision, from 0 to 1 (e.g. 0.05)", errors) is { } threshold)
        {
            gate = gate with { Threshold = threshold };
        }

        if (obj["window"] is { } windowNode && SpecFields.Duration(windowNode, $"{at}.window", errors) is { } window)
        {
            if (window > MaxWindow)
            {
                errors.Add(new($"{at}.window", $"at most {MaxWindow.TotalHours:0}h: the server keeps an hour of the agents' traffic reports"));
            }

            gate = gate with { Window = window };
        }

        if (obj["minRequests"] is { } minNode)
        {
            if (SpecFields.Int(minNode) is { } min and >= 1)
            {
                gate = gate with { MinRequests = min };
            }
            else
            {
                errors.Add(new($"{at}.minRequests", $"expected a whole number of requests, 1 or more, got {minNode.ToJsonString()}"));
            }
        }

        return gate;
    }
}
