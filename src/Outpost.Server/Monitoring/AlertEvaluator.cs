using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Outpost.Core.Api;
using Outpost.Core.Metrics;
using Outpost.Core.Resources;
using Outpost.Core.Store;
using Outpost.Server.Api;
using Outpost.Server.Hosting;

namespace Outpost.Server.Monitoring;

/// <summary>
/// Evaluates every AlertRule on an interval against the nodes' leases and usage, the apps'
/// traffic and the outboxes. Per rule and target an alert goes inactive → Pending (the
/// condition holds) → Firing (it held for the rule's `for`) → Resolved (it stopped holding);
/// a Pending alert whose condition stops goes back to inactive without a word. Firing and
/// resolving each POST the rule's webhook and record an event. State survives a restart.
/// </summary>
public sealed partial class AlertEvaluator(
    IControlPlaneStore store, ResourceView view, MetricsRecorder metrics, WebhookSender webhooks, Leadership leadership, ServerOptions options, ILogger<AlertEvaluator> logger)
    : BackgroundService, IMetricsSource
{
    public const string Pending = "Pending";
    public const string Firing = "Firing";
    public const string Resolved = "Resolved";

    /// <summary>How long a resolved alert stays listed.</summary>
    private static readonly TimeSpan ResolvedKept = TimeSpan.FromHours(1);

    private readonly Lock _lock = new();
    private Dictionary<(string Rule, string Target), AlertRecord>? _alerts;
    private readonly Dictionary<string, Queue<(DateTimeOffset At, long Dropped)>> _drops = new(StringComparer.Ordinal);
    private Dictionary<string, AlertRuleSpec> _rules = new(StringComparer.Ordinal);
    private long _evaluations;
    private long _evaluationFailures;

    /// <summary>What a condition found on one target.</summary>
    private sealed record Finding(string Target, bool Holds, double Value, string Message);

    /// <summary>The alerts as they stand, with the rule's severity and labels.</summary>
    public IReadOnlyList<(AlertRecord Alert, AlertRuleSpec? Rule)> Current()
    {
        lock (_lock)
        {
            return _alerts is null ? [] : [.. _alerts.Values.OrderBy(a => a.Rule, StringComparer.Ordinal).ThenBy(a => a.Target, StringComparer.Ordinal)
                .Select(a => (a, _rules.GetValueOrDefault(a.Rule)))];
        }
    }

    /// <summary>
    /// Rules are evaluated on the leading replica only; each term starts from the alerts as stored.
    /// The other replicas read what the leader stored, each interval, so every replica lists them.
    /// </summary>
    protected override Task ExecuteAsync(CancellationToken stoppingToken) =>
        Task.WhenAll(leadership.RunWhileLeaderAsync(RunAsync, stoppingToken), FollowAsync(stoppingToken));

    private async Task FollowAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(options.AlertInterval, options.TimeProvider);
        try
        {
            do
            {
                if (leadership.IsLeader)
                {
                    continue;
                }

                try
                {
                    var stored = await store.ListAlertsAsync(stoppingToken);
                    var rules = new Dictionary<string, AlertRuleSpec>(StringComparer.Ordinal);
                    foreach (var resource in (await store.ListAsync(ResourceKind.AlertRule.Kind, stoppingToken)).Items)
                    {
                        rules[resource.Name] = AlertRuleSpec.Read(resource.Spec());
                    }

                    lock (_lock)
                    {
                        if (!leadership.IsLeader)
                        {
                            _alerts = stored.ToDictionary(a => (a.Rule, a.Target));
                            _rules = rules;
                        }
                    }
                }
                catch (Exception ex) when (ex is not OperationCanceledException)
                {
                    LogFollowFailed(logger, ex.Message);
                }
            }
            while (await timer.WaitForNextTickAsync(stoppingToken));
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    private async Task RunAsync(CancellationToken stoppingToken)
    {
        lock (_lock)
        {
            _alerts = null;
        }

        using var timer = new PeriodicTimer(options.AlertInterval, options.TimeProvider);
        do
        {
            try
            {
                await EvaluateAsync(stoppingToken);
                Interlocked.Increment(ref _evaluations);
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                Interlocked.Increment(ref _evaluationFailures);
                LogEvaluationFailed(logger, ex);
            }
        }
        while (await timer.WaitForNextTickAsync(stoppingToken));
    }

    private async Task EvaluateAsync(CancellationToken ct)
    {
        var now = options.TimeProvider.GetUtcNow();
        if (_alerts is null)
        {
            var stored = await store.ListAlertsAsync(ct);
            lock (_lock)
            {
                _alerts = stored.ToDictionary(a => (a.Rule, a.Target));
            }
        }

        var rules = new Dictionary<string, AlertRuleSpec>(StringComparer.Ordinal);
        foreach (var resource in (await store.ListAsync(ResourceKind.AlertRule.Kind, ct)).Items)
        {
            rules[resource.Name] = AlertRuleSpec.Read(resource.Spec()); // validated when applied
        }

        // Every node rendered (its lease state, its status parsed) only when a rule looks at nodes:
        // with ten thousand nodes and none, that was most of an idle server's CPU.
        var nodes = rules.Values.Any(r => r.IsNodeCondition)
            ? (await store.ListAsync(ResourceKind.Node.Kind, ct)).Items.Select(n => (Resource: n, View: view.Render(n))).ToList()
            : [];
        TrackDrops(nodes, now);
        var apps = (await store.ListAsync(ResourceKind.Application.Kind, ct)).Items.Select(a => a.Name).ToList();
        var usage = nodes.Count > 0 ? await WithStoredUsageAsync(metrics.Usage, now, ct) : metrics.Usage;
        var seen = new HashSet<(string, string)>();
        foreach (var (name, rule) in rules)
        {
            var findings = rule.IsNodeCondition ? NodeFindings(rule, nodes, usage, now) : AppFindings(rule, apps, now);
            foreach (var finding in findings)
            {
                seen.Add((name, finding.Target));
                await StepAsync(name, rule, finding, now, ct);
            }
        }

        // Alerts whose rule or target is gone: a firing one resolves, the rest are forgotten.
        foreach (var ((ruleName, target), alert) in Snapshot().Where(p => !seen.Contains(p.Key)))
        {
            var why = rules.ContainsKey(ruleName) ? $"{target} is gone" : $"rule {ruleName} was deleted";
            await StepAsync(ruleName, rules.GetValueOrDefault(ruleName) ?? _rules.GetValueOrDefault(ruleName), new Finding(target, false, alert.Value, why), now, ct);
        }

        lock (_lock)
        {
            _rules = rules;
        }
    }

    /// <summary>
    /// The usage nodes reported here, and for nodes whose stream is on another replica (or was on
    /// this server before a restart) the last minute stored in the past three.
    /// </summary>
    private async Task<IReadOnlyDictionary<string, NodeUsageSample>> WithStoredUsageAsync(IReadOnlyDictionary<string, NodeUsageSample> local, DateTimeOffset now, CancellationToken ct)
    {
        var usage = new Dictionary<string, NodeUsageSample>(local, StringComparer.Ordinal);
        foreach (var minute in (await store.ListNodeMinutesAsync(now - TimeSpan.FromMinutes(3), null, ct)).OrderBy(m => m.Minute))
        {
            if (!local.ContainsKey(minute.Node))
            {
                usage[minute.Node] = minute.Usage;
            }
        }

        return usage;
    }

    private async Task StepAsync(string ruleName, AlertRuleSpec? rule, Finding finding, DateTimeOffset now, CancellationToken ct)
    {
        var key = (ruleName, finding.Target);
        AlertRecord? existing;
        lock (_lock)
        {
            existing = _alerts!.GetValueOrDefault(key);
        }

        AlertRecord? next;
        string? notify = null;
        if (finding.Holds && rule is not null)
        {
            next = existing is null || existing.State == Resolved
                ? new AlertRecord(ruleName, finding.Target, Pending, finding.Value, finding.Message, now, null, null)
                : existing with { Value = finding.Value, Message = finding.Message };
            if (next.State == Pending && now - next.ActiveSince >= rule.For)
            {
                next = next with { State = Firing, FiredAt = now };
                notify = "firing";
            }
        }
        else
        {
            next = existing?.State switch
            {
                Firing => existing with { State = Resolved, ResolvedAt = now, Value = finding.Value, Message = finding.Message },
                Resolved when now - existing.ResolvedAt > ResolvedKept || rule is null => null,
                Resolved => existing,
                _ => null, // Pending that stopped holding, or nothing: inactive
            };
            notify = existing?.State == Firing ? "resolved" : null;
        }

        if (next == existing)
        {
            return;
        }

        lock (_lock)
        {
            if (next is null)
            {
                _alerts!.Remove(key);
            }
            else
            {
                _alerts![key] = next;
            }
        }

        // Only state changes are written; a new value while firing stays in memory.
        if (next is null)
        {
            await store.DeleteAlertAsync(ruleName, finding.Target, ct);
        }
        else if (existing is null || next.State != existing.State)
        {
            await store.SaveAlertAsync(next, ct);
        }

        if (notify is not null && next is not null)
        {
            await NotifyAsync(next, rule, notify, ct);
        }
    }

    private async Task NotifyAsync(AlertRecord alert, AlertRuleSpec? rule, string status, CancellationToken ct)
    {
        var severity = rule?.Severity ?? "warning";
        var reason = status == "firing" ? "AlertFiring" : "AlertResolved";
        await store.AppendEventAsync(new EventRecord(0, options.TimeProvider.GetUtcNow(), ResourceKind.AlertRule.Kind, alert.Rule,
            status == "firing" ? "Warning" : "Normal", reason, alert.Message), ct);
        LogTransition(logger, alert.Rule, alert.Target, status, alert.Message);
        if (rule?.Webhook is { } url)
        {
            webhooks.Enqueue(url, Payload(alert, rule, status, severity));
        }
    }

    /// <summary>The webhook body, shaped like an Alertmanager alert so existing receivers can read it.</summary>
    public static JsonObject Payload(AlertRecord alert, AlertRuleSpec rule, string status, string severity)
    {
        ArgumentNullException.ThrowIfNull(alert);
        ArgumentNullException.ThrowIfNull(rule);
        var slash = alert.Target.IndexOf('/', StringComparison.Ordinal);
        var (targetKind, targetName) = (alert.Target[..slash], alert.Target[(slash + 1)..]);
        var labels = new JsonObject
        {
            ["alertname"] = alert.Rule,
            ["severity"] = severity,
            [targetKind] = targetName,
        };
        foreach (var (key, value) in rule.Labels)
        {
            labels[key] = value;
        }

        return new JsonObject
        {
            ["version"] = "outpost.dev/v1",
            ["status"] = status,
            ["rule"] = alert.Rule,
            ["condition"] = rule.ConditionName,
            ["severity"] = severity,
            ["target"] = new JsonObject { ["kind"] = targetKind == "node" ? "Node" : "Application", ["name"] = targetName },
            ["labels"] = labels,
            ["annotations"] = new JsonObject { ["summary"] = alert.Message },
            ["value"] = alert.Value,
            ["threshold"] = rule.DescribeThreshold(),
            ["startsAt"] = ResourceJson.FormatTimestamp(alert.FiredAt ?? alert.ActiveSince),
            ["endsAt"] = alert.ResolvedAt is { } end ? ResourceJson.FormatTimestamp(end) : null,
            ["fingerprint"] = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes($"{alert.Rule}\n{alert.Target}")))[..16],
        };
    }

    private IEnumerable<Finding> NodeFindings(AlertRuleSpec rule, List<(StoredResource Resource, JsonObject View)> nodes, IReadOnlyDictionary<string, NodeUsageSample> usage, DateTimeOffset now)
    {
        foreach (var (resource, rendered) in nodes.Where(n => rule.NodeSelector.All(p => n.Resource.Labels.TryGetValue(p.Key, out var v) && v == p.Value)))
        {
            var target = "node/" + resource.Name;
            var state = rendered["status"]?["state"]?.GetValue<string>() ?? NodeState.Offline;
            var sample = usage.GetValueOrDefault(resource.Name);
            var outbox = rendered["status"]?["outbox"];
            yield return rule.Condition switch
            {
                AlertCondition.NodeOffline => new Finding(target, state == NodeState.Offline, state == NodeState.Offline ? 1 : 0, $"node {resource.Name} is {state}"),
                AlertCondition.NodeNotReady => new Finding(target, state != NodeState.Ready, state != NodeState.Ready ? 1 : 0, $"node {resource.Name} is {state}"),
                AlertCondition.NodeCpu => Ratio(target, sample?.CpuRatio, rule, $"node {resource.Name} CPU"),
                AlertCondition.NodeMemory => Ratio(target, sample?.MemoryRatio, rule, $"node {resource.Name} memory"),
                AlertCondition.NodeDisk => Ratio(target, sample?.DiskRatio, rule, $"node {resource.Name} disk (data dir's filesystem)"),
                AlertCondition.OutboxBacklog => Count(target, outbox?["pendingRecords"]?.GetValue<long>() ?? 0, rule, $"node {resource.Name} outbox holds", "records waiting"),
                _ => Count(target, DropsWithin(resource.Name, rule.Window, now), rule, $"node {resource.Name} outbox dropped",
                    $"records in the last {Describe(rule.Window)}"),
            };
        }
    }

    private IEnumerable<Finding> AppFindings(AlertRuleSpec rule, List<string> apps, DateTimeOffset now)
    {
        var traffic = metrics.RecentByApp(now - rule.Window);
        foreach (var app in apps.Where(a => rule.App is null || rule.App == a))
        {
            var stats = traffic.GetValueOrDefault(app) ?? new RequestStats();
            var target = "app/" + app;
            var enough = stats.Requests >= rule.MinRequests;
            if (rule.Condition == AlertCondition.AppErrorRate)
            {
                var rate = stats.Requests > 0 ? (double)stats.ServerErrors / stats.Requests : 0;
                yield return new Finding(target, enough && rate > rule.Threshold, Math.Round(rate, 4), string.Create(CultureInfo.InvariantCulture,
                    $"app {app}: {stats.ServerErrors} of {stats.Requests} requests answered 5xx in the last {Describe(rule.Window)} ({rate * 100:0.#}%, threshold {rule.DescribeThreshold()})"));
            }
            else
            {
                var p99 = stats.Quantile(0.99) ?? 0;
                yield return new Finding(target, enough && p99 > rule.Threshold, Math.Round(p99, 6), string.Create(CultureInfo.InvariantCulture,
                    $"app {app}: p99 latency {p99 * 1000:0.##}ms over {stats.Requests} requests in the last {Describe(rule.Window)} (threshold {rule.DescribeThreshold()})"));
            }
        }
    }

    private static Finding Ratio(string target, double? ratio, AlertRuleSpec rule, string what) => ratio is { } r
        ? new Finding(target, r > rule.Threshold, Math.Round(r, 4), string.Create(CultureInfo.InvariantCulture, $"{what} at {r * 100:0.#}% (threshold {rule.DescribeThreshold()})"))
        : new Finding(target, false, 0, $"{what}: no report yet");

    private static Finding Count(string target, long count, AlertRuleSpec rule, string what, string unit) =>
        new(target, count > rule.Threshold, count, string.Create(CultureInfo.InvariantCulture, $"{what} {count} {unit} (threshold {rule.DescribeThreshold()})"));

    /// <summary>Remembers each node's dropped-records total over the last hour, to tell drops within a window.</summary>
    private void TrackDrops(List<(StoredResource Resource, JsonObject View)> nodes, DateTimeOffset now)
    {
        foreach (var (resource, rendered) in nodes)
        {
            if (rendered["status"]?["outbox"]?["droppedTotal"]?.GetValue<long>() is not { } dropped)
            {
                continue;
            }

            if (!_drops.TryGetValue(resource.Name, out var samples))
            {
                _drops[resource.Name] = samples = new();
            }

            samples.Enqueue((now, dropped));
            while (samples.Count > 1 && samples.Peek().At < now - AlertRuleSpec.MaxWindow)
            {
                samples.Dequeue();
            }
        }

        foreach (var gone in _drops.Keys.Except(nodes.Select(n => n.Resource.Name), StringComparer.Ordinal).ToList())
        {
            _drops.Remove(gone);
        }
    }

    /// <summary>Records dropped since the window began: the latest total less the last one seen before the window (or the oldest kept).</summary>
    private long DropsWithin(string node, TimeSpan window, DateTimeOffset now)
    {
        if (!_drops.TryGetValue(node, out var samples) || samples.Count == 0)
        {
            return 0;
        }

        var baseline = samples.Peek().Dropped;
        foreach (var (at, dropped) in samples)
        {
            if (at > now - window)
            {
                break;
            }

            baseline = dropped;
        }

        return samples.Last().Dropped - baseline;
    }

    private List<KeyValuePair<(string Rule, string Target), AlertRecord>> Snapshot()
    {
        lock (_lock)
        {
            return [.. _alerts!];
        }
    }

    public Task WriteAsync(PrometheusText text, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(text);
        var current = Current();
        text.Gauge("outpost_alerts", "Alerts by state: Pending (condition holding, waiting out `for`), Firing, Resolved (listed for an hour).");
        foreach (var state in new[] { Pending, Firing, Resolved })
        {
            text.Sample("outpost_alerts", current.Count(a => a.Alert.State == state), ("state", state));
        }

        // As Prometheus's own rule_evaluations_total: proof the rules are being looked at, and
        // how a test or a dashboard knows an evaluation has run since some data arrived.
        text.Counter("outpost_alert_evaluations_total", "Completed evaluations of every alert rule (one per --alert-interval).")
            .Sample("outpost_alert_evaluations_total", Interlocked.Read(ref _evaluations));
        text.Counter("outpost_alert_evaluation_failures_total", "Evaluations that failed (logged; retried at the next interval).")
            .Sample("outpost_alert_evaluation_failures_total", Interlocked.Read(ref _evaluationFailures));
        text.Gauge("outpost_alert_firing", "1 for each firing alert, by rule, target and severity.");
        foreach (var (alert, rule) in current.Where(a => a.Alert.State == Firing))
        {
            text.Sample("outpost_alert_firing", 1, ("rule", alert.Rule), ("target", alert.Target), ("severity", rule?.Severity ?? "warning"));
        }

        return Task.CompletedTask;
    }

    private static string Describe(TimeSpan span) => Core.Rollouts.RolloutPlanner.Describe(span);

    [LoggerMessage(Level = LogLevel.Information, Message = "Alert {Rule} on {Target} is {Status}: {Message}")]
    private static partial void LogTransition(ILogger logger, string rule, string target, string status, string message);

    [LoggerMessage(Level = LogLevel.Debug, Message = "Could not read the alerts the leader stored: {Reason}")]
    private static partial void LogFollowFailed(ILogger logger, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Alert evaluation failed; trying again next interval")]
    private static partial void LogEvaluationFailed(ILogger logger, Exception exception);
}
