using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Outpost.Core.Security;
using Outpost.Core.Tokens;

namespace Outpost.Core.Tests.Security;

public sealed class SecretBoxTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("outpost-secretbox-").FullName;

    [Fact]
    public void Seal_ThenOpen_RoundTrips_AndTheKeyFileIsPrivateAndKept()
    {
        var path = Path.Combine(_dir, "secrets.key");
        string sealedValue;
        using (var box = SecretBox.LoadOrCreate(path))
        {
            sealedValue = box.Seal("hunter2", SecretBox.ContextOf("db", "password"));
        }

        Assert.StartsWith(SecretBox.Prefix, sealedValue, StringComparison.Ordinal);
        Assert.DoesNotContain("hunter2", sealedValue, StringComparison.Ordinal);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(path));
        using var reopened = SecretBox.LoadOrCreate(path);
        Assert.Equal("hunter2", reopened.Open(sealedValue, SecretBox.ContextOf("db", "password")));
    }

    [Fact]
    public void Open_RefusesAnotherContext_ATamperedValue_AndAnotherKey()
    {
        using var box = SecretBox.LoadOrCreate(Path.Combine(_dir, "a.key"));
        using var other = SecretBox.LoadOrCreate(Path.Combine(_dir, "b.key"));
        var sealedValue = box.Seal("hunter2", SecretBox.ContextOf("db", "password"));
        var bytes = Convert.FromBase64String(sealedValue[SecretBox.Prefix.Length..]);
        bytes[^1] ^= 1;
        var tampered = SecretBox.Prefix + Convert.ToBase64String(bytes);

        Assert.ThrowsAny<CryptographicException>(() => box.Open(sealedValue, SecretBox.ContextOf("db", "user")));
        Assert.ThrowsAny<CryptographicException>(() => box.Open(tampered, SecretBox.ContextOf("db", "password")));
        Assert.ThrowsAny<CryptographicException>(() => other.Open(sealedValue, SecretBox.ContextOf("db", "password")));
        Assert.ThrowsAny<CryptographicException>(() => box.Open("hunter2", SecretBox.ContextOf("db", "password")));
    }

    [Fact]
    public void SealingTwice_GivesDifferentCiphertexts()
    {
        using var box = SecretBox.LoadOrCreate(Path.Combine(_dir, "c.key"));

        Assert.NotEqual(box.Seal("x", "c"), box.Seal("x", "c"));
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);
}

public sealed class TrustBundleTests
{
    private static X509Certificate2 Ca(string name)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest($"CN={name}", key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        return request.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-1), DateTimeOffset.UtcNow.AddYears(1));
    }

    [Fact]
    public void Fingerprint_IsTheSha256OfTheCertificate_AndSurvivesPem()
    {
        using var ca = Ca("test ca");
        var bundle = TrustBundle.FromCertificates([ca]);

        Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(ca.RawData)), bundle.Fingerprint);
        Assert.Equal(bundle.Fingerprint, TrustBundle.FromPem(bundle.Pem).Fingerprint);
        Assert.True(bundle.Matches(bundle.Fingerprint.ToUpperInvariant()));
        Assert.False(bundle.Matches(new string('0', 64)));
        Assert.Throws<FormatException>(() => TrustBundle.FromPem("not a certificate"));
    }

    [Fact]
    public void Validate_AcceptsOnlyCertificatesIssuedUnderTheBundle()
    {
        using var caKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var caRequest = new CertificateRequest("CN=real ca", caKey, HashAlgorithmName.SHA256);
        caRequest.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        caRequest.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign, true));
        using var ca = caRequest.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-1), DateTimeOffset.UtcNow.AddYears(1));
        using var leafKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var leafRequest = new CertificateRequest("CN=edge-1", leafKey, HashAlgorithmName.SHA256);
        leafRequest.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid(TrustBundle.ClientAuthOid)], false));
        using var leaf = leafRequest.Create(ca, DateTimeOffset.UtcNow.AddMinutes(-1), DateTimeOffset.UtcNow.AddDays(1), [1, 2, 3]);
        using var stranger = Ca("someone else");

        Assert.Null(TrustBundle.FromCertificates([ca]).Validate(leaf, null, TrustBundle.ClientAuthOid));
        Assert.NotNull(TrustBundle.FromCertificates([stranger]).Validate(leaf, null, TrustBundle.ClientAuthOid));
        Assert.NotNull(TrustBundle.FromCertificates([ca]).Validate(leaf, null, TrustBundle.ServerAuthOid)); // wrong purpose
    }

    /// <summary>A CA and two certificates it issued for 127.0.0.1 (with their private keys): one for server authentication, one for client authentication only.</summary>
    private static (X509Certificate2 Ca, X509Certificate2 Server, X509Certificate2 ClientOnly) Issue(string caName)
    {
        using var caKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var caRequest = new CertificateRequest($"CN={caName}", caKey, HashAlgorithmName.SHA256);
        caRequest.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        caRequest.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign, true));
        var ca = caRequest.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-1), DateTimeOffset.UtcNow.AddYears(1));

        X509Certificate2 Leaf(string purposeOid, byte serial)
        {
            using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
            var request = new CertificateRequest("CN=outpost server", key, HashAlgorithmName.SHA256);
            request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid(purposeOid)], false));
            var names = new SubjectAlternativeNameBuilder();
            names.AddIpAddress(System.Net.IPAddress.Loopback);
            request.CertificateExtensions.Add(names.Build());
            using var issued = request.Create(ca, DateTimeOffset.UtcNow.AddMinutes(-1), DateTimeOffset.UtcNow.AddDays(1), [serial]);
            using var withKey = issued.CopyWithPrivateKey(key);
            // A PKCS#12 round trip, so the key is usable by the TLS library.
            return X509CertificateLoader.LoadPkcs12(withKey.Export(X509ContentType.Pkcs12), null);
        }

        return (ca, Leaf(TrustBundle.ServerAuthOid, 1), Leaf(TrustBundle.ClientAuthOid, 2));
    }

    /// <summary>One TLS handshake on loopback, the client validating as the agent does; the server's certificate and the client's verdict.</summary>
    private static async Task<(bool Accepted, string? Reason)> HandshakeAsync(X509Certificate2 serverCertificate, TrustBundle pinned)
    {
        using var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        using var client = new System.Net.Sockets.TcpClient();
        await client.ConnectAsync(System.Net.IPAddress.Loopback, ((System.Net.IPEndPoint)listener.LocalEndpoint).Port);
        using var accepted = await listener.AcceptTcpClientAsync();
        await using var serverStream = new System.Net.Security.SslStream(accepted.GetStream());
        await using var clientStream = new System.Net.Security.SslStream(client.GetStream());
        string? reason = null;
        var serving = serverStream.AuthenticateAsServerAsync(new System.Net.Security.SslServerAuthenticationOptions { ServerCertificate = serverCertificate });
        try
        {
            await clientStream.AuthenticateAsClientAsync(new System.Net.Security.SslClientAuthenticationOptions
            {
                TargetHost = "127.0.0.1",
                CertificateChainPolicy = pinned.ChainPolicy(TrustBundle.ServerAuthOid),
                RemoteCertificateValidationCallback = pinned.ServerValidator(r => reason = r),
            });
            await serving;
            return (true, reason);
        }
        catch (System.Security.Authentication.AuthenticationException)
        {
            try
            {
                await serving;
            }
            catch (Exception ex) when (ex is System.Security.Authentication.AuthenticationException or IOException)
            {
            }

            return (false, reason);
        }
    }

    [Fact]
    public async Task AHandshakeUnderTheBundlesChainPolicy_AcceptsItsServer_AndRefusesAnotherCasOrAWrongPurpose_SayingWhy()
    {
        var (ca, server, clientOnly) = Issue("fleet ca");
        var (otherCa, otherServer, otherClient) = Issue("someone else");
        using (ca)
        using (server)
        using (clientOnly)
        using (otherCa)
        using (otherServer)
        using (otherClient)
        {
            var pinned = TrustBundle.FromCertificates([ca]);
            Assert.Equal((true, (string?)null), await HandshakeAsync(server, pinned));

            var (accepted, reason) = await HandshakeAsync(otherServer, pinned);
            Assert.False(accepted);
            Assert.StartsWith("the server's certificate does not chain to the pinned CA", reason, StringComparison.Ordinal);

            // Issued by the pinned CA, but for client authentication only.
            (accepted, reason) = await HandshakeAsync(clientOnly, pinned);
            Assert.False(accepted);
            Assert.StartsWith("the server's certificate does not chain to the pinned CA", reason, StringComparison.Ordinal);
        }
    }
}

public sealed class JoinTokenPinTests
{
    [Fact]
    public void AJoinTokenCarriesItsPin_AndStillParses()
    {
        var issued = TokenCodec.Issue(TokenKind.Join, DateTimeOffset.UtcNow);
        var pin = new string('a', 64);
        var token = TokenCodec.WithPin(issued.Token, pin);

        Assert.True(TokenCodec.TryParse(token, out var kind, out var id, out _));
        Assert.Equal((TokenKind.Join, issued.Record.Id), (kind, id));
        Assert.Equal(pin, TokenCodec.PinOf(token));
        Assert.Null(TokenCodec.PinOf(issued.Token));
        Assert.False(TokenCodec.TryParse(token[..^1], out _, out _, out _)); // a cut pin is no token
        Assert.Throws<ArgumentException>(() => TokenCodec.WithPin(issued.Token, "short"));
        var api = TokenCodec.Issue(TokenKind.Api, DateTimeOffset.UtcNow, role: Roles.Viewer);
        Assert.False(TokenCodec.TryParse(api.Token + "_" + pin, out _, out _, out _)); // only join tokens pin
        Assert.Equal(Roles.Viewer, api.Record.Role);
    }
}
