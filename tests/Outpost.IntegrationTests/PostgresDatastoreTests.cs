using Outpost.Server.Tests.Store;

namespace Outpost.IntegrationTests;

/// <summary>`outpost server --datastore`: the control plane's store in a real PostgreSQL, with real agents.</summary>
[Collection(PostgresTests.Name)]
public sealed class PostgresDatastoreTests(PostgresServer postgres)
{
    [Fact]
    public async Task AServerOnPostgreSql_RunsTheFleet_KeepsItsStateAcrossARestart_AndASecondServerWithoutTheServerTokenIsRefused()
    {
        var database = await postgres.CreateDatabaseAsync();
        await using var fleet = new Fleet();
        await fleet.StartServerAsync(0, "--datastore", database);
        var port = new Uri(fleet.ServerUrl).Port;
        var token = await fleet.CreateJoinTokenAsync();
        var (_, gateway) = await fleet.StartAgentAsync("edge-1", token);
        var (code, output) = await fleet.ClientAsync("apply", "-f", fleet.WriteManifest("hello.yaml", Fleet.HelloApp));
        Assert.True(code == 0, output);
        await Fleet.WaitForBodyAsync(gateway + "/hello", "hello from edge-1 (path /)\n", Fleet.Patience);

        // A second server on the same database (its own data dir and port) needs the first one's server
        // token to open the CA kept there: without it, it is refused, saying why, and writes nothing of it.
        var second = Path.Combine(fleet.Root, "second");
        (code, output) = await OutpostProcess.RunAsync(fleet.Home, "server", "--data-dir", second, "--listen", "127.0.0.1:0", "--datastore", database);
        Assert.NotEqual(0, code);
        Assert.Contains("does not open the CA and secrets key that the first server stored", output, StringComparison.Ordinal);
        Assert.False(File.Exists(Path.Combine(second, "tls", "ca.key")), "nothing of the CA is written by a server that cannot open it");

        // The server restarts on the same database: what was applied is there, and the node comes back to it.
        await fleet.Server!.StopAsync();
        await fleet.StartServerAsync(port, "--datastore", database);
        await fleet.WaitForNodeStateAsync("edge-1", "Ready");
        (code, output) = await fleet.ClientAsync("get", "apps");
        Assert.True(code == 0 && output.Contains("hello", StringComparison.Ordinal), output);
        (code, output) = await fleet.ClientAsync("apply", "-f", fleet.WriteManifest("hello.yaml", Fleet.HelloApp + "\n  env:\n    GREETING: hi\n"));
        Assert.True(code == 0, output);
        await Fleet.WaitForBodyAsync(gateway + "/hello", "hi from edge-1 (path /)\n", Fleet.Patience);
    }

    private const string Topic = "readings";

    private const string RolloutPath = "/apis/outpost.dev/v1/applications/hello/rollout";

    /// <summary>Publishes records through an agent's gateway, one by one as a device would; returns their texts.</summary>
    private static async Task<List<string>> PublishAsync(string node, string gateway, int count, int start)
    {
        var texts = Enumerable.Range(start, count).Select(i => $"{node}-{i:D5}").ToList();
        foreach (var text in texts)
        {
            using var response = await Fleet.Http.PostAsync(gateway + "/_outpost/topics/" + Topic, new StringContent(text));
            Assert.Equal(System.Net.HttpStatusCode.Accepted, response.StatusCode);
        }

        return texts;
    }

    /// <summary>hello, in two canary steps: one node, a 20 s pause, then the rest.</summary>
    private static string Hello(string greeting) => Fleet.HelloApp + $"""

          env:
            GREETING: {greeting}
          rollout:
            strategy: canary
            steps:
            - percent: 25
              pause: 20s
            - percent: 100
        """;

    private static async Task<bool> LeadsAsync(Fleet fleet)
    {
        try
        {
            return (await fleet.ServerMetricsAsync()).Contains("\noutpost_server_leader 1", StringComparison.Ordinal);
        }
        catch (HttpRequestException)
        {
            return false;
        }
    }

    [Fact]
    public async Task TwoReplicas_TheLeaderKilledMidRollout_TheOtherFinishesIt_TheAgentsMoveOver_AndEveryRecordArrivesOnce()
    {
        var database = await postgres.CreateDatabaseAsync();
        await using var fleet = new Fleet();
        await fleet.StartServerAsync(0, "--datastore", database);
        var (replicaA, a) = (fleet.Server!, fleet.ServerUrl);
        var (replicaB, b) = await fleet.StartReplicaAsync("server-b", "--datastore", database);
        Assert.Equal(File.ReadAllBytes(Path.Combine(fleet.Root, "server", "tls", "ca.crt")), File.ReadAllBytes(Path.Combine(fleet.Root, "server-b", "tls", "ca.crt")));

        // Four nodes: two dial A first, two dial B first; each knows both.
        var token = await fleet.CreateJoinTokenAsync();
        var agents = await Task.WhenAll(Enumerable.Range(1, 4).Select(async i =>
        {
            var name = $"edge-{i}";
            var (_, gateway) = await fleet.StartAgentAsync(name, token, server: i <= 2 ? $"{a},{b}" : $"{b},{a}");
            return (Name: name, Gateway: gateway);
        }));
        var (code, output) = await fleet.ClientAsync("apply", "-f", fleet.WriteManifest("hello.yaml", Hello("one")));
        Assert.True(code == 0, output);
        await Task.WhenAll(agents.Select(x => Fleet.WaitForBodyAsync(x.Gateway + "/hello", $"one from {x.Name} (path /)\n", Fleet.Patience)));
        Assert.True(await LeadsAsync(fleet), "the first server leads");

        // Either replica shows every node Ready, wherever its stream is.
        foreach (var (name, process, url) in new[] { ("server-b", replicaB, b), ("server", replicaA, a) })
        {
            fleet.UseReplica(name, process, url);
            foreach (var agent in agents)
            {
                await fleet.WaitForNodeStateAsync(agent.Name, "Ready");
            }
        }

        var expected = new List<string>();
        foreach (var agent in agents)
        {
            expected.AddRange(await PublishAsync(agent.Name, agent.Gateway, 50, 0));
        }

        // Revision 2 goes to one node, then pauses 20 s: the leader dies in the pause, by SIGKILL,
        // while the nodes publish more.
        (code, output) = await fleet.ClientAsync("apply", "-f", fleet.WriteManifest("hello.yaml", Hello("two")));
        Assert.True(code == 0, output);
        await Eventually.UntilAsync(() => fleet.ApiGetAsync(RolloutPath),
            r => (long?)r["status"]?["revision"] == 2 && r["status"]?["moved"]?.AsArray().Count == 1,
            Fleet.Patience, "the first canary step of revision 2", r => r["status"]?.ToJsonString() ?? "");
        var publishing = Task.WhenAll(agents.Select(x => PublishAsync(x.Name, x.Gateway, 200, 50)));
        replicaA.Kill();
        expected.AddRange((await publishing).SelectMany(t => t));

        // B takes the lead, finishes the rollout, and every node comes over to it.
        fleet.UseReplica("server-b", replicaB, b);
        await Eventually.UntilAsync(() => LeadsAsync(fleet), leads => leads, Fleet.Patience, "replica B to lead", _ => "it does not");
        var rollout = await Eventually.UntilAsync(() => fleet.ApiGetAsync(RolloutPath),
            r => (long?)r["status"]?["revision"] == 2 && (string?)r["status"]?["phase"] == "Succeeded",
            2 * Fleet.Patience, "the rollout of revision 2 to succeed on replica B", r => r["status"]?.ToJsonString() ?? "");
        Assert.Equal(4, rollout["status"]!["moved"]!.AsArray().Count);
        await Task.WhenAll(agents.Select(x => Fleet.WaitForBodyAsync(x.Gateway + "/hello", $"two from {x.Name} (path /)\n", Fleet.Patience)));
        foreach (var agent in agents)
        {
            await fleet.WaitForNodeStateAsync(agent.Name, "Ready");
        }

        // Every record, from before, during and after the kill: once each.
        var records = await Eventually.UntilAsync(() => fleet.ReadTopicAsync(Topic), r => r.Count >= expected.Count, 2 * Fleet.Patience,
            $"{expected.Count} records at the server", r => $"{r.Count} records");
        Assert.Equal(expected.Count, records.Count);
        Assert.Equal(records.Count, records.Select(r => (r.Node, r.Sequence)).Distinct().Count());
        Assert.True(expected.ToHashSet().SetEquals(records.Select(r => r.Text)), "the stored records are not exactly the published ones");
    }

    [Fact]
    public async Task ADatastoreThatStopsTakingConnections_Gets503s_WithNothingWritten_AndTheServerCarriesOnOnceItIsBack()
    {
        var database = await postgres.CreateDatabaseAsync();
        var name = new Npgsql.NpgsqlConnectionStringBuilder(database).Database;
        await using var fleet = new Fleet();
        await fleet.StartServerAsync(0, "--datastore", database);
        var (code, output) = await fleet.ClientAsync("apply", "-f", fleet.WriteManifest("hello.yaml", Fleet.HelloApp));
        Assert.True(code == 0, output);

        // The database refuses every connection, and those open are ended.
        await postgres.AdminAsync($"ALTER DATABASE {name} WITH ALLOW_CONNECTIONS false");
        await postgres.AdminAsync($"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'");
        try
        {
            // Ended sessions go away a moment after the signal: none is left to serve the request.
            await Eventually.UntilAsync(() => postgres.AdminScalarAsync<long>($"SELECT count(*) FROM pg_stat_activity WHERE datname = '{name}'"),
                n => n == 0, Fleet.Patience, "the database's sessions to end", n => $"{n} left");
            using var request = new HttpRequestMessage(HttpMethod.Post, fleet.ServerUrl + "/apis/outpost.dev/v1/configsets")
            {
                Content = new StringContent("""{"apiVersion":"outpost.dev/v1","kind":"ConfigSet","metadata":{"name":"during"},"spec":{"data":{"a":"b"}}}""",
                    System.Text.Encoding.UTF8, "application/json"),
            };
            using var response = await fleet.ApiSendAsync(request);
            var body = await response.Content.ReadAsStringAsync();
            Assert.True(response.StatusCode == System.Net.HttpStatusCode.ServiceUnavailable, $"{(int)response.StatusCode} {body}");
            // The reason is PostgreSQL's: a refused connection, or one of the pool's that was ended (which comes first is timing).
            Assert.Contains("the datastore cannot be reached (", body, StringComparison.Ordinal);
            Assert.Contains("nothing was written", body, StringComparison.Ordinal);
            Assert.Equal("5", response.Headers.RetryAfter?.ToString());
        }
        finally
        {
            await postgres.AdminAsync($"ALTER DATABASE {name} WITH ALLOW_CONNECTIONS true");
        }

        // Back: nothing of the refused write is there, and writes go through again.
        await Eventually.UntilAsync(() => fleet.ClientAsync("get", "configsets"), r => r.ExitCode == 0, Fleet.Patience, "the server to read again", r => r.Output);
        (code, output) = await fleet.ClientAsync("get", "configsets");
        Assert.DoesNotContain("during", output, StringComparison.Ordinal);
        (code, output) = await fleet.ClientAsync("apply", "-f", fleet.WriteManifest("hello.yaml", Fleet.HelloApp + "\n  env:\n    GREETING: back\n"));
        Assert.True(code == 0, output);
    }

    [Fact]
    public async Task ADatastoreThatCannotBeReached_StopsTheServer_NamingWhere()
    {
        await using var fleet = new Fleet();
        var (code, output) = await OutpostProcess.RunAsync(fleet.Home, "server", "--data-dir", Path.Combine(fleet.Root, "server"), "--listen", "127.0.0.1:0",
            "--datastore", "postgres://outpost@127.0.0.1:1/outpost");
        Assert.NotEqual(0, code);
        Assert.Contains("127.0.0.1", output, StringComparison.Ordinal);
        Assert.DoesNotContain("server: https://", output, StringComparison.Ordinal);
    }
}
