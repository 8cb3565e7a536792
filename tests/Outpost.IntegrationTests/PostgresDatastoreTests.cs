using Outpost.Server.Tests.Store;

namespace Outpost.IntegrationTests;

/// <summary>`outpost server --datastore`: the control plane's store in a real PostgreSQL, with real agents.</summary>
[Collection(PostgresTests.Name)]
public sealed class PostgresDatastoreTests(PostgresServer postgres)
{
    [Fact]
    public async Task AServerOnPostgreSql_RunsTheFleet_KeepsItsStateAcrossARestart_AndASecondServerOnTheDatabaseIsRefused()
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
        // token to open the CA kept there; with it, it is refused all the same, saying why.
        var second = Path.Combine(fleet.Root, "second");
        (code, output) = await OutpostProcess.RunAsync(fleet.Home, "server", "--data-dir", second, "--listen", "127.0.0.1:0", "--datastore", database);
        Assert.NotEqual(0, code);
        Assert.Contains("does not open the CA and secrets key that the first server stored", output, StringComparison.Ordinal);
        Assert.False(File.Exists(Path.Combine(second, "tls", "ca.key")), "nothing of the CA is written by a server that cannot open it");
        (code, output) = await OutpostProcess.RunAsync(fleet.Home, "server", "--data-dir", second, "--listen", "127.0.0.1:0", "--datastore", database,
            "--server-token-file", Path.Combine(Path.Combine(fleet.Root, "server"), "server-token"));
        Assert.NotEqual(0, code);
        Assert.Contains("another outpost server is using database", output, StringComparison.Ordinal);
        Assert.Equal(File.ReadAllBytes(Path.Combine(Path.Combine(fleet.Root, "server"), "tls", "ca.crt")), File.ReadAllBytes(Path.Combine(second, "tls", "ca.crt")));

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
