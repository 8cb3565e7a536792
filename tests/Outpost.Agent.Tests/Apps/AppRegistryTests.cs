using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging.Abstractions;
using Outpost.Agent.Apps;
using Outpost.Agent.State;
using Outpost.Core.Resources;
using Outpost.Wasm.Hosting;

namespace Outpost.Agent.Tests.Apps;

public sealed class AppRegistryTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("outpost-registry-").FullName;
    private readonly WasmHost _host = new();
    private readonly AppRegistry _registry;
    private readonly string _digest;
    private readonly LocalDataStore _data;
    private readonly Agent.Monitoring.LogRing _logs;

    public AppRegistryTests()
    {
        var cache = new ModuleCache(_dir);
        var bytes = File.ReadAllBytes(Path.Combine(AppContext.BaseDirectory, "Modules", "hello.wasm"));
        _digest = Digest.Compute(bytes);
        File.WriteAllBytes(cache.PartialPathFor(_digest), bytes);
        cache.Complete(_digest);
        _data = new LocalDataStore(Path.Combine(_dir, "data.db"));
        _logs = new Agent.Monitoring.LogRing(Path.Combine(_dir, "logs.db"));
        _registry = new AppRegistry(_host, cache, "edge-1", new Host.AgentHostServices(_data, Core.Security.SecretBox.LoadOrCreate(Path.Combine(_dir, "secrets.key")), _logs, EmptyServices.Instance, NullLogger<Host.AgentHostServices>.Instance), NullLogger<AppRegistry>.Instance);
    }

    private DesiredResource App(string name, string route, long generation = 1, string? digest = null, int? probeExpects = null, JsonObject? rollout = null, string? greeting = null)
    {
        var json = new JsonObject
        {
            ["kind"] = "Application",
            ["metadata"] = new JsonObject { ["name"] = name },
            ["spec"] = new JsonObject
            {
                ["module"] = new JsonObject { ["digest"] = digest ?? _digest },
                ["triggers"] = new JsonObject { ["http"] = new JsonObject { ["route"] = route } },
            },
        };
        if (probeExpects is { } status)
        {
            json["spec"]!["readinessProbe"] = new JsonObject { ["path"] = route, ["expectStatus"] = status };
        }

        if (rollout is not null)
        {
            json["spec"]!["rollout"] = rollout;
        }

        if (greeting is not null)
        {
            json["spec"]!["env"] = new JsonObject { ["GREETING"] = greeting };
        }

        return new DesiredResource("Application", name, generation, generation, json.ToJsonString());
    }

    [Theory]
    [InlineData("/hello", "hello")]
    [InlineData("/hello/deep/path", "hello")]
    [InlineData("/hello/world", "world")]
    [InlineData("/helloworld", "root")]
    [InlineData("/other", "root")]
    public void Match_UsesLongestWholeSegmentPrefix(string path, string expected)
    {
        _registry.Reconcile([App("hello", "/hello"), App("world", "/hello/world"), App("root", "/")]);

        Assert.Equal(expected, _registry.Match(path)?.Name);
    }

    [Fact]
    public void ARevisionFailingItsReadinessProbe_NeverTakesTraffic_ThePreviousKeepsServing()
    {
        _registry.Reconcile([App("hello", "/hello", generation: 1)]);
        var serving = _registry.Match("/hello");

        _registry.Reconcile([App("hello", "/hello", generation: 2, probeExpects: 204)]); // hello answers 200

        Assert.Same(serving, _registry.Match("/hello"));
        Assert.Equal(1, _registry.Match("/hello")!.Version.Generation);
        var status = _registry.Status["hello"];
        Assert.Equal(("Failed", 2L), (status.State, status.Generation));
        Assert.Contains("GET /hello answered 200 (expected 204)", status.Message, StringComparison.Ordinal);
        Assert.Contains("revision 1 keeps serving", status.Message, StringComparison.Ordinal);

        _registry.Reconcile([App("hello", "/hello", generation: 3, probeExpects: 200)]);
        Assert.Equal(3, _registry.Match("/hello")!.Version.Generation);
        Assert.Equal("Ready", _registry.Status["hello"].State);
    }

    [Fact]
    public void AfterARestart_ARevisionFailingItsProbe_FallsBackToTheLastThatServedHere()
    {
        using var store = new AgentStore(Path.Combine(_dir, "agent.db"));
        var services = new Host.AgentHostServices(_data, Core.Security.SecretBox.LoadOrCreate(Path.Combine(_dir, "secrets.key")), _logs, EmptyServices.Instance, NullLogger<Host.AgentHostServices>.Instance);
        using (var before = new AppRegistry(_host, new ModuleCache(_dir), "edge-1", services, NullLogger<AppRegistry>.Instance, store))
        {
            before.Reconcile([App("hello", "/hello", generation: 1)]);
        }

        // Restarted (nothing loaded) with a desired revision that fails its probe, e.g. received just before going offline.
        using var after = new AppRegistry(_host, new ModuleCache(_dir), "edge-1", services, NullLogger<AppRegistry>.Instance, store);
        after.Reconcile([App("hello", "/hello", generation: 2, probeExpects: 204)]);

        Assert.Equal(1, after.Match("/hello")!.Version.Generation);
        Assert.Contains("revision 1 keeps serving", after.Status["hello"].Message, StringComparison.Ordinal);
    }

    private static JsonObject Gate() => new()
    {
        ["progressDeadline"] = "1m",
        ["errorRate"] = new JsonObject { ["threshold"] = 0.5, ["minRequests"] = 4, ["window"] = "1m" },
    };

    [Fact]
    public void ARevisionOnProbation_CrossingItsErrorRate_IsSwappedBackOnTheNode_AndNotRunAgain()
    {
        using var store = new AgentStore(Path.Combine(_dir, "agent.db"));
        var services = new Host.AgentHostServices(_data, Core.Security.SecretBox.LoadOrCreate(Path.Combine(_dir, "secrets.key")), _logs, EmptyServices.Instance, NullLogger<Host.AgentHostServices>.Instance);
        var time = new Microsoft.Extensions.Time.Testing.FakeTimeProvider(DateTimeOffset.UtcNow);
        using (var registry = new AppRegistry(_host, new ModuleCache(_dir), "edge-1", services, NullLogger<AppRegistry>.Instance, store, time))
        {
            registry.Reconcile([App("hello", "/hello", generation: 1, rollout: Gate())]);
            var first = registry.Match("/hello")!;
            registry.Reconcile([App("hello", "/hello", generation: 2, rollout: Gate(), greeting: "two")]);
            var second = registry.Match("/hello")!;
            Assert.Equal(2, second.Version.Generation);

            // 1 of 3 is below the minimum count; 3 of 4 answered 5xx crosses 50%.
            registry.Observe(second, 200);
            registry.Observe(second, 500);
            registry.Observe(second, 500);
            Assert.Same(second, registry.Match("/hello"));
            registry.Observe(second, 500);

            Assert.Same(first, registry.Match("/hello")); // the very instance kept warm, no recompile
            var status = registry.Status["hello"];
            Assert.Equal(("RolledBack", 1L, 2L), (status.State, status.Generation, status.FailedGeneration));
            Assert.Contains("revision 2: error rate 75% (3 of 4 requests answered 5xx) is above 50%; back on revision 1 in ", status.Message, StringComparison.Ordinal);

            // The server still says 2 (it has not heard yet, or the node is offline): the node does not run it again.
            registry.Reconcile([App("hello", "/hello", generation: 2, rollout: Gate(), greeting: "two")]);
            Assert.Same(first, registry.Match("/hello"));
        }

        // Across a restart too: it serves the last revision that served here.
        using (var restarted = new AppRegistry(_host, new ModuleCache(_dir), "edge-1", services, NullLogger<AppRegistry>.Instance, store, time))
        {
            restarted.Reconcile([App("hello", "/hello", generation: 2, rollout: Gate(), greeting: "two")]);
            Assert.Equal(1, restarted.Match("/hello")!.Version.Generation);
            Assert.Equal(("RolledBack", 2L), (restarted.Status["hello"].State, restarted.Status["hello"].FailedGeneration));

            // Once the server sends the fleet back to 1 the app is healthy again; a newer revision runs.
            restarted.Reconcile([App("hello", "/hello", generation: 1, rollout: Gate())]);
            Assert.Equal(("Ready", 1L), (restarted.Status["hello"].State, restarted.Status["hello"].Generation));
            restarted.Reconcile([App("hello", "/hello", generation: 3, rollout: Gate(), greeting: "three")]);
            Assert.Equal(3, restarted.Match("/hello")!.Version.Generation);
        }
    }

    [Fact]
    public void AfterItsProgressDeadline_ARevisionIsProven_AndErrorsNoLongerSwapItBack()
    {
        using var store = new AgentStore(Path.Combine(_dir, "agent.db"));
        var services = new Host.AgentHostServices(_data, Core.Security.SecretBox.LoadOrCreate(Path.Combine(_dir, "secrets.key")), _logs, EmptyServices.Instance, NullLogger<Host.AgentHostServices>.Instance);
        var time = new Microsoft.Extensions.Time.Testing.FakeTimeProvider(DateTimeOffset.UtcNow);
        using var registry = new AppRegistry(_host, new ModuleCache(_dir), "edge-1", services, NullLogger<AppRegistry>.Instance, store, time);
        registry.Reconcile([App("hello", "/hello", generation: 1, rollout: Gate())]);
        registry.Reconcile([App("hello", "/hello", generation: 2, rollout: Gate(), greeting: "two")]);
        var second = registry.Match("/hello")!;
        Assert.Equal(1, store.LoadLastGood()["hello"].Generation); // not proven yet

        time.Advance(TimeSpan.FromSeconds(61));
        Assert.Equal(2, store.LoadLastGood()["hello"].Generation);
        for (var i = 0; i < 10; i++)
        {
            registry.Observe(second, 500);
        }

        Assert.Same(second, registry.Match("/hello"));
        Assert.Equal("Ready", registry.Status["hello"].State);
    }

    [Fact]
    public void Reconcile_RemovesWhatIsNoLongerDesired()
    {
        _registry.Reconcile([App("hello", "/hello")]);
        _registry.Reconcile([]);

        Assert.Null(_registry.Match("/hello"));
        Assert.Empty(_registry.Status);
    }

    [Fact]
    public void SameRoute_FirstByNameServes_OtherReportsTheConflict()
    {
        _registry.Reconcile([App("b", "/x"), App("a", "/x")]);

        Assert.Equal("a", _registry.Match("/x")?.Name);
        Assert.Equal("Failed", _registry.Status["b"].State);
        Assert.Contains("already served by app 'a'", _registry.Status["b"].Message, StringComparison.Ordinal);
    }

    [Fact]
    public void MissingModule_ReportsFailed_AndKeepsServingThePreviousVersion()
    {
        _registry.Reconcile([App("hello", "/hello")]);

        _registry.Reconcile([App("hello", "/hello", generation: 2, digest: "sha256:" + new string('f', 64))]);

        Assert.Equal("Failed", _registry.Status["hello"].State);
        Assert.Equal(1, _registry.Match("/hello")!.Version.Generation);
    }

    public void Dispose()
    {
        _registry.Dispose();
        _host.Dispose();
        _data.Dispose();
        _logs.Dispose();
        Directory.Delete(_dir, recursive: true);
    }
}

/// <summary>A service provider with nothing in it: these tests make no outbound requests.</summary>
internal sealed class EmptyServices : IServiceProvider
{
    public static readonly EmptyServices Instance = new();

    public object? GetService(Type serviceType) => null;
}
