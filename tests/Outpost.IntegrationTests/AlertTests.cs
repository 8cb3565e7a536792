using System.Net;

namespace Outpost.IntegrationTests;

/// <summary>Alert rules evaluated on a real server fire to, and resolve at, a real webhook receiver on 127.0.0.1.</summary>
public sealed class AlertTests
{
    [Fact]
    public async Task NodeOfflineRule_FiresWhenTheAgentStops_RetriesARefusedWebhook_AndResolvesWhenItReturns()
    {
        await using var receiver = await WebhookReceiver.StartAsync(refuseFirst: 1);
        await using var fleet = new Fleet();
        await fleet.StartServerAsync(0, [.. Fleet.ShortLease, "--alert-interval", "200ms"]);
        var token = await fleet.CreateJoinTokenAsync();
        var (agent, _) = await fleet.StartAgentAsync("edge-1", token, extra: Fleet.FastHeartbeat);
        var (code, output) = await fleet.ClientAsync("apply", "-f", fleet.WriteManifest("offline.yaml", $"""
            apiVersion: outpost.dev/v1
            kind: AlertRule
            metadata:
              name: edge-offline
            spec:
              condition:
                type: nodeOffline
              for: 1s
              severity: critical
              labels:
                team: edge
              receiver:
                webhook:
                  url: {receiver.Url}
            """));
        Assert.True(code == 0, output);
        await fleet.WaitForNodeStateAsync("edge-1", "Ready");

        agent.Kill();
        await fleet.WaitForNodeStateAsync("edge-1", "Offline"); // stream gone and lease run out (NodeEventTests shows the steps)
        var firing = await receiver.WaitForAsync("firing", "Node/edge-1", Fleet.Patience);
        Assert.Equal(1, receiver.Refused);
        Assert.Equal(2, (int)firing["attempt"]!); // the first POST was refused and retried
        Assert.Equal("edge-offline", (string)firing["labels"]!["alertname"]!);
        Assert.Equal("critical", (string)firing["labels"]!["severity"]!);
        Assert.Equal("edge", (string)firing["labels"]!["team"]!);
        Assert.Equal("edge-1", (string)firing["labels"]!["node"]!);
        Assert.Equal("nodeOffline", (string)firing["condition"]!);
        Assert.Equal("node edge-1 is Offline", (string)firing["annotations"]!["summary"]!);
        Assert.Null(firing["endsAt"]);
        (code, output) = await fleet.ClientAsync("get", "alerts");
        Assert.True(code == 0, output);
        Assert.Matches(@"edge-offline\s+node/edge-1\s+Firing\s+critical\s+1\s+", output);

        await fleet.StartAgentAsync("edge-1", token, extra: Fleet.FastHeartbeat);
        var resolved = await receiver.WaitForAsync("resolved", "Node/edge-1", Fleet.Patience);
        Assert.Equal((string)firing["fingerprint"]!, (string)resolved["fingerprint"]!);
        Assert.Equal((string)firing["startsAt"]!, (string)resolved["startsAt"]!);
        Assert.NotNull(resolved["endsAt"]);
        Assert.Equal(["firing", "resolved"], receiver.Accepted.Select(n => (string)n["status"]!));
        (code, output) = await fleet.ClientAsync("get", "alerts");
        Assert.True(code == 0, output);
        Assert.Matches(@"edge-offline\s+node/edge-1\s+Resolved\s+", output);
        var events = await fleet.ApiGetAsync("/api/v1/events?fieldSelector=involvedObject.name=edge-offline");
        Assert.Equal(["AlertFiring", "AlertResolved"], events["items"]!.AsArray().Select(e => (string)e!["reason"]!));
    }

    [Fact]
    public async Task ErrorRateRule_FiresWhenAnAppAnswers500s_AndResolvesWhenItStops()
    {
        await using var receiver = await WebhookReceiver.StartAsync();
        await using var fleet = new Fleet();
        await fleet.StartServerAsync(0, "--alert-interval", "200ms");
        var token = await fleet.CreateJoinTokenAsync();
        var (_, gateway) = await fleet.StartAgentAsync("edge-1", token, extra: ["--heartbeat", "200ms"]);
        // The rollout gate is out of the way (a share can never exceed 1): this is about the alert.
        var (code, output) = await fleet.ClientAsync("apply", "-f", fleet.WriteManifest("app.yaml", Fleet.HelloApp + $"""

              rollout:
                errorRate:
                  threshold: 1
            ---
            apiVersion: outpost.dev/v1
            kind: AlertRule
            metadata:
              name: hello-errors
            spec:
              condition:
                type: appErrorRate
                app: hello
                threshold: 0.2
                window: 2s
                minRequests: 5
              receiver:
                webhook:
                  url: {receiver.Url}
            """));
        Assert.True(code == 0, output);
        await Fleet.WaitForBodyAsync(gateway + "/hello", "hello from edge-1 (path /)\n", Fleet.Patience);

        using var healthy = new CancellationTokenSource();
        var failing = 0;
        var wrong = new System.Collections.Concurrent.ConcurrentQueue<string>();
        var load = Task.Run(async () =>
        {
            while (!healthy.IsCancellationRequested)
            {
                var status = Volatile.Read(ref failing) == 1 ? "500" : "200";
                var (answer, body) = await Fleet.GetAsync($"{gateway}/hello?status={status}");
                if (answer != 0 && (int)answer != int.Parse(status, System.Globalization.CultureInfo.InvariantCulture))
                {
                    wrong.Enqueue($"asked for {status}, got {(int)answer} {body}"); // asserted below: a failure in here would only stop the load
                }

                await Task.Delay(20);
            }
        });

        try
        {
            // Healthy traffic first: once the server holds enough of it for the rule (minRequests)
            // and has evaluated the rule twice since, nothing has fired.
            await Eventually.UntilAsync(fleet.ServerMetricsAsync, m => Counter(m, """outpost_app_requests_total{app="hello",revision="1",node="edge-1",class="success"}""") >= 10,
                Fleet.Patience, "the server to hold 10 healthy requests of hello", m => m);
            var evaluated = Counter(await fleet.ServerMetricsAsync(), "outpost_alert_evaluations_total");
            await Eventually.UntilAsync(fleet.ServerMetricsAsync, m => Counter(m, "outpost_alert_evaluations_total") >= evaluated + 2,
                Fleet.Patience, "two more evaluations of the rules", m => m);
            Assert.Empty(receiver.Accepted);
            Volatile.Write(ref failing, 1);
            var firing = await receiver.WaitForAsync("firing", "Application/hello", Fleet.Patience);
            Assert.Equal("appErrorRate", (string)firing["condition"]!);
            Assert.Equal("20%", (string)firing["threshold"]!);
            Assert.True((double)firing["value"]! > 0.2, firing.ToJsonString());
            Assert.Matches(@"^app hello: \d+ of \d+ requests answered 5xx in the last 2s", (string)firing["annotations"]!["summary"]!);

            Volatile.Write(ref failing, 0);
            var resolved = await receiver.WaitForAsync("resolved", "Application/hello", Fleet.Patience);
            Assert.True((double)resolved["value"]! <= 0.2, resolved.ToJsonString());
        }
        finally
        {
            await healthy.CancelAsync();
            await load;
        }

        // Every notification the receiver accepted is counted as delivered (a rate on the edge of
        // the threshold may fire and resolve more than once on a loaded machine: the counts must agree).
        Assert.Empty(wrong);
        // The receiver records a notification before it answers, the server counts it after: wait for the count to catch up.
        var metrics = await Eventually.UntilAsync(fleet.ServerMetricsAsync,
            m => Counter(m, """outpost_alert_notifications_total{result="delivered"}""") == receiver.Accepted.Count, Fleet.Patience,
            $"the server to count the {receiver.Accepted.Count} notifications the receiver accepted as delivered", m => m);
        Assert.Contains("""outpost_alerts{state="Resolved"} 1""", metrics, StringComparison.Ordinal);
    }

    /// <summary>A sample's value in a Prometheus exposition, or 0 when it is absent.</summary>
    private static long Counter(string metrics, string series)
    {
        var line = metrics.Split('\n').FirstOrDefault(l => l.StartsWith(series + " ", StringComparison.Ordinal));
        return line is null ? 0 : (long)double.Parse(line[(series.Length + 1)..], System.Globalization.CultureInfo.InvariantCulture);
    }

    [Fact]
    public async Task ABadRule_IsRefusedWithTheFieldNamed()
    {
        await using var fleet = new Fleet();
        await fleet.StartServerAsync();
        var (code, output) = await fleet.ClientAsync("apply", "-f", fleet.WriteManifest("bad.yaml", """
            apiVersion: outpost.dev/v1
            kind: AlertRule
            metadata:
              name: bad
            spec:
              condition:
                type: nodeCpu
                threshold: 90
              for: soon
              receiver:
                webhook:
                  url: ftp://example.invalid/hook
            """));
        Assert.Equal(1, code);
        Assert.Contains("spec.condition.threshold: expected a share from 0 to 1 (e.g. 0.9), got 90", output, StringComparison.Ordinal);
        Assert.Contains("spec.for: expected a duration like 30s, 5m or 1h", output, StringComparison.Ordinal);
        Assert.Contains("spec.receiver.webhook.url: 'ftp://example.invalid/hook' is not an absolute http(s) URL", output, StringComparison.Ordinal);
        Assert.Empty((await fleet.ApiGetAsync("/apis/outpost.dev/v1/alertrules"))["items"]!.AsArray());
    }
}
