using Outpost.Core.Manifests;
using Outpost.Core.Resources;

namespace Outpost.Core.Tests.Resources;

public sealed class AlertRuleSpecTests
{
    /// <summary>Reads a rule the way `apply` does: YAML (whose 1 is an integer), then validation.</summary>
    private static (AlertRuleSpec Spec, List<FieldError> Errors) Read(string spec)
    {
        var yaml = "apiVersion: outpost.dev/v1\nkind: AlertRule\nmetadata:\n  name: r\nspec:\n" + string.Join('\n', spec.Split('\n').Select(l => "  " + l));
        var doc = YamlManifestReader.Read(yaml, "rule.yaml").Single();
        var errors = ManifestValidator.Validate(doc.Body, allowModulePath: true).ToList();
        return (AlertRuleSpec.Read(doc.Body["spec"]), errors);
    }

    [Fact]
    public void EachCondition_ReadsItsThreshold_WithDefaults()
    {
        var (offline, errors) = Read("condition: {type: nodeOffline}");
        Assert.Empty(errors);
        Assert.Equal((AlertCondition.NodeOffline, TimeSpan.Zero, "warning", (Uri?)null), (offline.Condition, offline.For, offline.Severity, offline.Webhook));
        Assert.True(offline.IsNodeCondition);

        var (cpu, cpuErrors) = Read("condition: {type: nodeCpu, threshold: 1, nodeSelector: {site: lab}}\nfor: 2m\nseverity: critical\nreceiver: {webhook: {url: 'http://127.0.0.1:9/hook'}}");
        Assert.Empty(cpuErrors);
        Assert.Equal((1.0, TimeSpan.FromMinutes(2), "critical", "lab"), (cpu.Threshold, cpu.For, cpu.Severity, cpu.NodeSelector["site"]));
        Assert.Equal("http://127.0.0.1:9/hook", cpu.Webhook!.AbsoluteUri);
        Assert.Equal("100%", cpu.DescribeThreshold());

        var (latency, latencyErrors) = Read("condition: {type: appLatencyP99, app: hello, threshold: 250ms, window: 10m, minRequests: 50}");
        Assert.Empty(latencyErrors);
        Assert.Equal((0.25, TimeSpan.FromMinutes(10), 50, "hello"), (latency.Threshold, latency.Window, latency.MinRequests, latency.App));
        Assert.False(latency.IsNodeCondition);
        Assert.Equal("250ms", latency.DescribeThreshold());

        var (dropped, droppedErrors) = Read("condition: {type: outboxDropped}");
        Assert.Empty(droppedErrors);
        Assert.Equal((0.0, TimeSpan.FromMinutes(5)), (dropped.Threshold, dropped.Window));
    }

    [Fact]
    public void BadRules_NameTheField()
    {
        static IEnumerable<string> Errors(string spec) => Read(spec).Errors.Select(e => $"{e.Field}: {e.Message}");

        Assert.Contains("spec.condition.type: unknown condition 'nodeHot'; expected one of: nodeOffline, nodeNotReady, nodeCpu, nodeMemory, nodeDisk, appErrorRate, appLatencyP99, outboxBacklog, outboxDropped",
            Errors("condition: {type: nodeHot}"));
        Assert.Contains("spec.condition.threshold: required field is missing: the share (0 to 1, e.g. 0.9) over which nodeMemory holds", Errors("condition: {type: nodeMemory}"));
        Assert.Contains("spec.condition.threshold: expected a share from 0 to 1 (e.g. 0.9), got 90", Errors("condition: {type: nodeDisk, threshold: 90}"));
        Assert.Contains("spec.condition.threshold: expected a duration like 30s, 5m or 1h, got 0.25", Errors("condition: {type: appLatencyP99, threshold: 0.25}"));
        Assert.Contains("spec.condition.app: not a field of condition nodeOffline; expected type, nodeSelector", Errors("condition: {type: nodeOffline, app: hello}"));
        Assert.Contains("spec.condition.window: must be more than 0 and at most 1h (the server keeps an hour of fine-grained reports)",
            Errors("condition: {type: appErrorRate, threshold: 0.1, window: 2h}"));
        Assert.Contains("spec.severity: unknown severity 'page'; expected one of: info, warning, critical", Errors("condition: {type: nodeOffline}\nseverity: page"));
        Assert.Contains("spec.receiver.webhook.url: required field is missing: the http(s) URL notifications are POSTed to", Errors("condition: {type: nodeOffline}\nreceiver: {webhook: {}}"));
        Assert.Contains("spec.receiver: expected {webhook: {url: http://...}}", Errors("condition: {type: nodeOffline}\nreceiver: {email: ops@example.com}"));
        Assert.Contains("spec.forr: unknown field; expected condition, for, severity, labels or receiver", Errors("condition: {type: nodeOffline}\nforr: 1m"));
        Assert.Contains(Read("for: 1m").Errors, e => e.Field == "spec.condition");
    }

    [Fact]
    public void AWholeNumberErrorRateThreshold_IsANumber()
    {
        // YAML's 1 is an integer: the rollout gate reads it as the share 1.0 rather than failing.
        var doc = YamlManifestReader.Read("""
            apiVersion: outpost.dev/v1
            kind: Application
            metadata: {name: hello}
            spec:
              module: {path: hello.wasm}
              triggers: {http: {route: /hello}}
              rollout: {errorRate: {threshold: 1}}
            """, "app.yaml").Single();
        Assert.Empty(ManifestValidator.Validate(doc.Body, allowModulePath: true));
        Assert.Equal(1.0, RolloutSpec.Read(doc.Body["spec"]!["rollout"]).ErrorRate.Threshold);
    }
}
