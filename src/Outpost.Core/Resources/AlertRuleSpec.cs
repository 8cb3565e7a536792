using System.Globalization;
using System.Text.Json.Nodes;
using Outpost.Core.Manifests;

namespace Outpost.Core.Resources;

/// <summary>What an AlertRule watches. Node conditions hold per node, app conditions per app.</summary>
public enum AlertCondition
{
    /// <summary>The node is Offline: lease expired and stream gone.</summary>
    NodeOffline,

    /// <summary>The node is not Ready (NotReady or Offline).</summary>
    NodeNotReady,

    /// <summary>The node's CPU busy share is over the threshold (0..1).</summary>
    NodeCpu,

    /// <summary>The node's memory in use is over the threshold share (0..1).</summary>
    NodeMemory,

    /// <summary>The data dir's filesystem is fuller than the threshold share (0..1).</summary>
    NodeDisk,

    /// <summary>The share of the app's requests answered 5xx over the window is over the threshold (0..1).</summary>
    AppErrorRate,

    /// <summary>The app's 99th percentile latency over the window is over the threshold (a duration).</summary>
    AppLatencyP99,

    /// <summary>The node's outbox holds more records than the threshold.</summary>
    OutboxBacklog,

    /// <summary>The node's outbox dropped more records than the threshold (default 0) over the window.</summary>
    OutboxDropped,
}

/// <summary>The typed view of an AlertRule's spec.</summary>
public sealed record AlertRuleSpec
{
    public static readonly TimeSpan MaxWindow = TimeSpan.FromHours(1);

    public static readonly IReadOnlyList<string> Severities = ["info", "warning", "critical"];

    private static readonly Dictionary<string, AlertCondition> Conditions = new(StringComparer.Ordinal)
    {
        ["nodeOffline"] = AlertCondition.NodeOffline,
        ["nodeNotReady"] = AlertCondition.NodeNotReady,
        ["nodeCpu"] = AlertCondition.NodeCpu,
        ["nodeMemory"] = AlertCondition.NodeMemory,
        ["nodeDisk"] = AlertCondition.NodeDisk,
        ["appErrorRate"] = AlertCondition.AppErrorRate,
        ["appLatencyP99"] = AlertCondition.AppLatencyP99,
        ["outboxBacklog"] = AlertCondition.OutboxBacklog,
        ["outboxDropped"] = AlertCondition.OutboxDropped,
    };

    public AlertCondition Condition { get; init; }

    /// <summary>The condition's name as written (nodeOffline, appErrorRate, ...).</summary>
    public string ConditionName => Conditions.First(c => c.Value == Condition).Key;

    /// <summary>Ratio, record count, or seconds (appLatencyP99), as the condition reads it.</summary>
    public double Threshold { get; init; }

    /// <summary>The span app conditions and outboxDropped look back over. Default 5m.</summary>
    public TimeSpan Window { get; init; } = TimeSpan.FromMinutes(5);

    /// <summary>App conditions hold only with at least this many requests in the window. Default 1.</summary>
    public int MinRequests { get; init; } = 1;

    /// <summary>App conditions: only this app (null: each app).</summary>
    public string? App { get; init; }

    /// <summary>Node conditions: only nodes with these labels.</summary>
    public IReadOnlyDictionary<string, string> NodeSelector { get; init; } = StoredResource.EmptyMap;

    /// <summary>How long the condition must hold before the alert fires. Default 0.</summary>
    public TimeSpan For { get; init; }

    public string Severity { get; init; } = "warning";

    public IReadOnlyDictionary<string, string> Labels { get; init; } = StoredResource.EmptyMap;

    /// <summary>Where firing and resolved notifications are POSTed; null when the rule only shows in `get alerts`.</summary>
    public Uri? Webhook { get; init; }

    public bool IsNodeCondition => Condition is not (AlertCondition.AppErrorRate or AlertCondition.AppLatencyP99);

    /// <summary>Reads and validates a spec; every problem goes to <paramref name="errors"/> with its field.</summary>
    public static AlertRuleSpec Read(JsonNode? node, List<FieldError>? errors = null)
    {
        errors ??= [];
        var spec = new AlertRuleSpec();
        if (node is not JsonObject obj)
        {
            errors.Add(new("spec", node is null ? "required field is missing: an AlertRule needs a condition" : $"expected an object, got {node.ToJsonString()}"));
            return spec;
        }

        foreach (var (key, _) in obj)
        {
            if (key is not ("condition" or "for" or "severity" or "labels" or "receiver"))
            {
                errors.Add(new($"spec.{key}", "unknown field; expected condition, for, severity, labels or receiver"));
            }
        }

        spec = ReadCondition(obj["condition"], spec, errors);
        if (obj["for"] is { } forNode && SpecFields.Duration(forNode, "spec.for", errors) is { } duration)
        {
            spec = spec with { For = duration };
        }

        if (obj["severity"] is { } severityNode && SpecFields.String(severityNode, "spec.severity", errors) is { } severity)
        {
            if (!Severities.Contains(severity))
            {
                errors.Add(new("spec.severity", $"unknown severity '{severity}'; expected one of: {string.Join(", ", Severities)}"));
            }

            spec = spec with { Severity = severity };
        }

        if (obj["labels"] is { } labels)
        {
            errors.AddRange(ManifestValidator.ValidateLabels(labels, "spec.labels"));
            spec = spec with { Labels = ResourceJson.ReadMap(labels) };
        }

        if (obj["receiver"] is { } receiver)
        {
            spec = spec with { Webhook = ReadWebhook(receiver, errors) };
        }

        return spec;
    }

    private static AlertRuleSpec ReadCondition(JsonNode? node, AlertRuleSpec spec, List<FieldError> errors)
    {
        if (node is not JsonObject condition)
        {
            errors.Add(new("spec.condition", node is null
                ? $"required field is missing: {{type: ...}} with type one of {string.Join(", ", Conditions.Keys)}"
                : $"expected an object like {{type: nodeOffline}}, got {node.ToJsonString()}"));
            return spec;
        }

        var typeName = SpecFields.String(condition["type"], "spec.condition.type", errors);
        if (typeName is null)
        {
            if (condition["type"] is null)
            {
                errors.Add(new("spec.condition.type", $"required field is missing: one of {string.Join(", ", Conditions.Keys)}"));
            }

            return spec;
        }

        if (!Conditions.TryGetValue(typeName, out var type))
        {
            errors.Add(new("spec.condition.type", $"unknown condition '{typeName}'; expected one of: {string.Join(", ", Conditions.Keys)}"));
            return spec;
        }

        spec = spec with { Condition = type };
        var allowed = new List<string> { "type" };
        allowed.AddRange(type switch
        {
            AlertCondition.NodeOffline or AlertCondition.NodeNotReady => ["nodeSelector"],
            AlertCondition.NodeCpu or AlertCondition.NodeMemory or AlertCondition.NodeDisk or AlertCondition.OutboxBacklog => ["threshold", "nodeSelector"],
            AlertCondition.OutboxDropped => ["threshold", "window", "nodeSelector"],
            _ => ["threshold", "window", "minRequests", "app"],
        });
        foreach (var (key, _) in condition)
        {
            if (!allowed.Contains(key))
            {
                errors.Add(new($"spec.condition.{key}", $"not a field of condition {typeName}; expected {string.Join(", ", allowed)}"));
            }
        }

        var threshold = condition["threshold"];
        switch (type)
        {
            case AlertCondition.NodeCpu or AlertCondition.NodeMemory or AlertCondition.NodeDisk or AlertCondition.AppErrorRate:
                if (threshold is null)
                {
                    errors.Add(new("spec.condition.threshold", $"required field is missing: the share (0 to 1, e.g. 0.9) over which {typeName} holds"));
                }
                else if (SpecFields.Number(threshold, "spec.condition.threshold", 0, 1, "a share from 0 to 1 (e.g. 0.9)", errors) is { } ratio)
                {
                    spec = spec with { Threshold = ratio };
                }

                break;
            case AlertCondition.AppLatencyP99:
                if (threshold is null)
                {
                    errors.Add(new("spec.condition.threshold", "required field is missing: the latency (e.g. 250ms) over which appLatencyP99 holds"));
                }
                else if (SpecFields.Duration(threshold, "spec.condition.threshold", errors) is { } latency)
                {
                    spec = spec with { Threshold = latency.TotalSeconds };
                }

                break;
            case AlertCondition.OutboxBacklog or AlertCondition.OutboxDropped:
                if (threshold is null && type == AlertCondition.OutboxBacklog)
                {
                    errors.Add(new("spec.condition.threshold", "required field is missing: the number of pending records over which outboxBacklog holds"));
                }
                else if (threshold is not null && SpecFields.Number(threshold, "spec.condition.threshold", 0, long.MaxValue, "a number of records, 0 or more", errors) is { } count)
                {
                    spec = spec with { Threshold = count };
                }

                break;
        }

        if (condition["window"] is { } windowNode && allowed.Contains("window") && SpecFields.Duration(windowNode, "spec.condition.window", errors) is { } window)
        {
            if (window <= TimeSpan.Zero || window > MaxWindow)
            {
                errors.Add(new("spec.condition.window", $"must be more than 0 and at most {MaxWindow.TotalHours:0}h (the server keeps an hour of fine-grained reports)"));
            }

            spec = spec with { Window = window };
        }

        if (condition["minRequests"] is { } minNode && allowed.Contains("minRequests"))
        {
            if (SpecFields.Int(minNode) is { } min and >= 1)
            {
                spec = spec with { MinRequests = min };
            }
            else
            {
                errors.Add(new("spec.condition.minRequests", $"expected a whole number of requests, 1 or more, got {minNode.ToJsonString()}"));
            }
        }

        if (condition["app"] is { } appNode && allowed.Contains("app") && SpecFields.String(appNode, "spec.condition.app", errors) is { } app)
        {
            if (!ManifestValidator.IsDnsLabel(app))
            {
                errors.Add(new("spec.condition.app", $"'{app}' is not an app name"));
            }

            spec = spec with { App = app };
        }

        if (condition["nodeSelector"] is { } selector && allowed.Contains("nodeSelector"))
        {
            errors.AddRange(ManifestValidator.ValidateLabels(selector, "spec.condition.nodeSelector"));
            spec = spec with { NodeSelector = ResourceJson.ReadMap(selector) };
        }

        return spec;
    }

    private static Uri? ReadWebhook(JsonNode receiver, List<FieldError> errors)
    {
        if (receiver is not JsonObject obj || obj["webhook"] is not JsonObject webhook)
        {
            errors.Add(new("spec.receiver", "expected {webhook: {url: http://...}}"));
            return null;
        }

        foreach (var (key, _) in obj)
        {
            if (key != "webhook")
            {
                errors.Add(new($"spec.receiver.{key}", "unknown receiver; expected webhook"));
            }
        }

        foreach (var (key, _) in webhook)
        {
            if (key != "url")
            {
                errors.Add(new($"spec.receiver.webhook.{key}", "unknown field; expected url"));
            }
        }

        var url = SpecFields.String(webhook["url"], "spec.receiver.webhook.url", errors);
        if (url is null)
        {
            if (webhook["url"] is null)
            {
                errors.Add(new("spec.receiver.webhook.url", "required field is missing: the http(s) URL notifications are POSTed to"));
            }

            return null;
        }

        if (!Uri.TryCreate(url, UriKind.Absolute, out var uri) || (uri.Scheme != Uri.UriSchemeHttp && uri.Scheme != Uri.UriSchemeHttps))
        {
            errors.Add(new("spec.receiver.webhook.url", $"'{url}' is not an absolute http(s) URL"));
            return null;
        }

        return uri;
    }

    /// <summary>The threshold as people write it: 90%, 250ms, 1000 records.</summary>
    public string DescribeThreshold() => Condition switch
    {
        AlertCondition.NodeOffline or AlertCondition.NodeNotReady => "",
        AlertCondition.AppLatencyP99 => Threshold < 1
            ? string.Create(CultureInfo.InvariantCulture, $"{Threshold * 1000:0.##}ms")
            : string.Create(CultureInfo.InvariantCulture, $"{Threshold:0.##}s"),
        AlertCondition.OutboxBacklog or AlertCondition.OutboxDropped => string.Create(CultureInfo.InvariantCulture, $"{Threshold:0} records"),
        _ => string.Create(CultureInfo.InvariantCulture, $"{Threshold * 100:0.##}%"),
    };
}
