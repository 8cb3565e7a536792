using Npgsql;
using Outpost.Server.Hosting;
using Outpost.Server.Security;
using Outpost.Server.Tests.Store;

namespace Outpost.Server.Tests.Security;

/// <summary>Servers on one datastore end with the first one's CA and secrets key, sealed in the datastore with the server token.</summary>
[Collection(PostgresTests.Name)]
public sealed class ServerBootstrapTests(PostgresServer server) : IAsyncLifetime
{
    private readonly string _root = Directory.CreateTempSubdirectory("outpost-bootstrap-").FullName;
    private string _database = "";

    public async Task InitializeAsync() => _database = await server.CreateDatabaseAsync();

    public Task DisposeAsync()
    {
        server.DropDatabase(_database);
        Directory.Delete(_root, recursive: true);
        return Task.CompletedTask;
    }

    private ServerOptions Options(string name, string? tokenFile = null) =>
        new() { DataDir = Directory.CreateDirectory(Path.Combine(_root, name)).FullName, Datastore = _database, ServerTokenFile = tokenFile };

    private static byte[] Read(ServerOptions options, string file) => File.ReadAllBytes(Path.Combine(options.DataDir, file));

    [Fact]
    public async Task ASecondServer_WithTheFirstsToken_TakesItsCaAndSecretsKey_ReplacingItsOwn()
    {
        var first = Options("first");
        await ServerBootstrap.ShareAsync(first, CancellationToken.None);
        foreach (var file in ServerBootstrap.Files)
        {
            Assert.True(File.Exists(Path.Combine(first.DataDir, file)), $"{file} was made on the first start");
        }

        // The second ran alone once (its own CA and serving certificate), then joins the datastore.
        var second = Options("second", Path.Combine(first.DataDir, "server-token"));
        using (CertificateAuthority.LoadOrCreate(Path.Combine(second.DataDir, "tls"), ["localhost"], DateTimeOffset.UtcNow))
        {
        }

        Assert.NotEqual(Read(first, "tls/ca.crt"), Read(second, "tls/ca.crt"));
        await ServerBootstrap.ShareAsync(second, CancellationToken.None);

        foreach (var file in ServerBootstrap.Files)
        {
            Assert.Equal(Read(first, file), Read(second, file));
        }

        Assert.False(File.Exists(Path.Combine(second.DataDir, "tls", "server.crt")), "a serving certificate of the replaced CA is dropped, to be issued again");
        using var authority = CertificateAuthority.LoadOrCreate(Path.Combine(second.DataDir, "tls"), ["localhost"], DateTimeOffset.UtcNow);
        using var firstCa = System.Security.Cryptography.X509Certificates.X509CertificateLoader.LoadCertificate(Read(first, "tls/ca.crt"));
        Assert.Equal(firstCa.Subject, authority.ServingCertificate.Issuer);

        // Starting again changes nothing.
        await ServerBootstrap.ShareAsync(first, CancellationToken.None);
        Assert.Equal(Read(second, "tls/ca.key"), Read(first, "tls/ca.key"));
    }

    [Fact]
    public async Task AServerWithAnotherToken_IsStoppedInWords_AndWritesNoneOfTheSharedFiles()
    {
        await ServerBootstrap.ShareAsync(Options("first"), CancellationToken.None);
        var stranger = Options("stranger");

        var refused = await Assert.ThrowsAsync<InvalidOperationException>(() => ServerBootstrap.ShareAsync(stranger, CancellationToken.None));

        Assert.Contains("does not open the CA and secrets key that the first server stored", refused.Message, StringComparison.Ordinal);
        Assert.Contains("--server-token-file", refused.Message, StringComparison.Ordinal);
        Assert.All(ServerBootstrap.Files, file => Assert.False(File.Exists(Path.Combine(stranger.DataDir, file)), $"{file} was written"));
    }

    [Fact]
    public async Task TheDatastore_HoldsTheSetSealed_NeverTheKeysInTheClear()
    {
        var first = Options("first");
        await ServerBootstrap.ShareAsync(first, CancellationToken.None);

        await using var source = NpgsqlDataSource.Create(_database);
        await using var command = source.CreateCommand("SELECT name, sealed FROM bootstrap ORDER BY name");
        await using var reader = await command.ExecuteReaderAsync();
        var names = new List<string>();
        while (await reader.ReadAsync())
        {
            names.Add(reader.GetString(0));
            var stored = reader.GetFieldValue<byte[]>(1);
            var local = Read(first, reader.GetString(0));
            Assert.DoesNotContain(System.Text.Encoding.ASCII.GetString(local).Trim(), System.Text.Encoding.ASCII.GetString(stored), StringComparison.Ordinal);
            Assert.DoesNotContain("PRIVATE KEY", System.Text.Encoding.ASCII.GetString(stored), StringComparison.Ordinal);
        }

        Assert.Equal(ServerBootstrap.Files.Order(StringComparer.Ordinal), names);
    }
}
