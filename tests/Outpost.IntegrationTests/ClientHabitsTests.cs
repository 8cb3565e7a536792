using System.Text.RegularExpressions;

namespace Outpost.IntegrationTests;

/// <summary>
/// What kubectl users type out of habit works the same way with `outpost`: several -f, get -w,
/// describe in words with the object's events, and a mistyped kind answered with the right one.
/// </summary>
[Trait("Category", "aot")]
public sealed class ClientHabitsTests
{
    [Fact]
    public async Task SeveralFiles_Watch_Describe_AndKindHints_WorkAsKubectlUsersExpect()
    {
        await using var fleet = new Fleet();
        await fleet.StartServerAsync();
        var (_, gateway) = await fleet.StartAgentAsync("edge-1", await fleet.CreateJoinTokenAsync());
        var hello = fleet.WriteManifest("hello.yaml", Fleet.HelloApp);
        var echo = fleet.WriteManifest("echo.yaml", Fleet.HelloApp.Replace("name: hello", "name: echo", StringComparison.Ordinal).Replace("/hello", "/echo", StringComparison.Ordinal));
        var other = fleet.WriteManifest("other.yaml", Fleet.HelloApp.Replace("name: hello", "name: other", StringComparison.Ordinal).Replace("/hello", "/other", StringComparison.Ordinal));

        // -f repeats, and one -f may list files separated by commas.
        var (code, output) = await fleet.ClientAsync("apply", "-f", hello, "-f", $"{echo},{other}");
        Assert.True(code == 0, output);
        foreach (var name in new[] { "hello", "echo", "other" })
        {
            Assert.Contains($"application.outpost.dev/{name} created", output, StringComparison.Ordinal);
        }

        await Fleet.WaitForBodyAsync(gateway + "/other", "hello from edge-1 (path /)\n", Fleet.Patience);
        (code, output) = await fleet.ClientAsync("delete", "-f", echo, "-f", other);
        Assert.True(code == 0, output);
        Assert.Contains("application.outpost.dev \"other\" deleted", output, StringComparison.Ordinal);

        // get apps: READY counts the targeted nodes serving the current revision.
        await Eventually.UntilAsync(() => fleet.ClientAsync("get", "apps"), r => Regex.IsMatch(r.Output, @"(?m)^hello\s+1\s+1/1\s+Succeeded\s+core\s+/hello\s"),
            Fleet.Patience, "get apps to show hello 1/1 Ready", r => r.Output);

        // get -w: the table, then a row per change, until stopped.
        await using (var watch = OutpostProcess.Start(fleet.Home, "get", "apps", "-w", "--output-watch-events", "--config", fleet.ConfigPath))
        {
            await Eventually.UntilAsync(() => watch.Output, o => Regex.IsMatch(o, @"(?m)^ADDED\s+hello\s+1\s"), Fleet.Patience, "the watch to list hello", o => o);
            (code, output) = await fleet.ClientAsync("apply", "-f", fleet.WriteManifest("hello.yaml", Fleet.HelloApp + "\n  env:\n    GREETING: hi"));
            Assert.True(code == 0, output);
            await Eventually.UntilAsync(() => watch.Output, o => Regex.IsMatch(o, @"(?m)^MODIFIED\s+hello\s+2\s+1/1\s+Succeeded\s"), Fleet.Patience,
                "the watch to show revision 2 Ready on the node", o => o);
            (code, output) = await fleet.ClientAsync("delete", "app", "hello");
            Assert.True(code == 0, output);
            await Eventually.UntilAsync(() => watch.Output, o => Regex.IsMatch(o, @"(?m)^DELETED\s+hello\s"), Fleet.Patience, "the watch to show hello deleted", o => o);
            Assert.False(Regex.IsMatch(watch.Output, @"(?m)^ADDED\s+hello\s+2\s"), watch.Output); // a change of a listed app is MODIFIED
        }

        // describe node: the node in words, its apps, then its events; not the raw status.
        (code, output) = await fleet.ClientAsync("apply", "-f", fleet.WriteManifest("hello.yaml", Fleet.HelloApp));
        Assert.True(code == 0, output);
        var described = await Eventually.UntilAsync(() => fleet.ClientAsync("describe", "node", "edge-1"),
            r => r.ExitCode == 0 && Regex.IsMatch(r.Output, @"(?m)^  hello\s+1\s+Ready") && r.Output.Contains("NodeReady", StringComparison.Ordinal),
            Fleet.Patience, "describe node to show hello Ready and the node's events", r => r.Output);
        Assert.Matches(@"(?m)^State:\s+Ready \(the agent's stream is open", described.Output);
        Assert.Matches(@"(?m)^Gateway:\s+" + Regex.Escape(gateway) + "$", described.Output);
        Assert.Matches(@"(?m)^Events:\n\s+TIME\s+TYPE\s+REASON\s+MESSAGE\n(?s:.*)\bNormal\s+NodeReady\s+node edge-1 is connected", described.Output);
        Assert.DoesNotContain("messages:", described.Output, StringComparison.Ordinal); // the sync counters as raw YAML
        Assert.DoesNotContain("nodeInfo", described.Output, StringComparison.Ordinal); // the host twice
        (code, output) = await fleet.ClientAsync("describe", "app", "hello");
        Assert.True(code == 0, output);
        Assert.Matches(@"(?m)^Revision:\s+1$", output);
        Assert.Matches(@"(?m)^\s+\S+\s+Normal\s+RolloutStarted\s+revision 1: a new app", output);

        // Kinds: every one is named, a near miss is corrected, and a Kubernetes habit is answered.
        (code, output) = await fleet.ClientAsync("get", "nosuchkind");
        Assert.Equal(1, code);
        Assert.Contains("use one of nodes, apps, configsets, secrets, buckets, alertrules, runtimeclasses, alerts, events, topics, services, audit", output, StringComparison.Ordinal);
        (code, output) = await fleet.ClientAsync("get", "nods");
        Assert.Contains("(did you mean nodes?)", output, StringComparison.Ordinal);
        (code, output) = await fleet.ClientAsync("get", "pods");
        Assert.Contains("try apps", output, StringComparison.Ordinal);
        (code, output) = await fleet.ClientAsync("get", "--help");
        Assert.True(code == 0, output);
        Assert.Contains("runtimeclasses", output, StringComparison.Ordinal);
        Assert.Contains("--watch", output, StringComparison.Ordinal);
    }
}
