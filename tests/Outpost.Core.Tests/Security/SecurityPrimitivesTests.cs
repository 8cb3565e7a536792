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
