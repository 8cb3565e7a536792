using System.Net;
using System.Net.NetworkInformation;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Outpost.Core.Security;

namespace Outpost.Server.Security;

/// <summary>
/// The server's own certificate authority, created on first start in DATA/tls (files 0600):
/// it signs the serving certificate (unless one is brought with --tls-cert) and every node's
/// client certificate. Its fingerprint is what join tokens pin.
/// </summary>
public sealed class CertificateAuthority : IDisposable
{
    private readonly X509Certificate2 _ca;
    private readonly ECDsa _caKey;

    private CertificateAuthority(X509Certificate2 ca, ECDsa caKey, X509Certificate2 serving, TrustBundle trust)
    {
        _ca = ca;
        _caKey = caKey;
        ServingCertificate = serving;
        Trust = trust;
        NodeTrust = TrustBundle.FromCertificates([ca]);
    }

    /// <summary>The certificate (with key) the server presents.</summary>
    public X509Certificate2 ServingCertificate { get; }

    /// <summary>What clients and agents trust for this server: the CA, plus the roots of a brought serving certificate's chain.</summary>
    public TrustBundle Trust { get; }

    /// <summary>What node certificates must chain to: this CA alone.</summary>
    public TrustBundle NodeTrust { get; }

    /// <summary>Serving certificates are renewed when they have less than this left.</summary>
    public static readonly TimeSpan RenewServingBefore = TimeSpan.FromDays(30);

    /// <summary>
    /// Loads the CA and serving certificate from <paramref name="dir"/>, creating what is missing.
    /// A generated serving certificate is renewed when it nears expiry or lacks a name it must carry.
    /// </summary>
    public static CertificateAuthority LoadOrCreate(string dir, IReadOnlyCollection<string> requiredNames, DateTimeOffset now, string? certFile = null, string? keyFile = null)
    {
        ArgumentNullException.ThrowIfNull(requiredNames);
        var (ca, caKey) = LoadOrCreateCa(dir, now);
        X509Certificate2 serving;
        var bundle = new List<X509Certificate2> { ca };
        if (certFile is not null)
        {
            // Brought certificate: serve it with its chain; clients trust its root as well.
            serving = X509Certificate2.CreateFromPemFile(certFile, keyFile);
            var chain = new X509Certificate2Collection();
            chain.ImportFromPemFile(certFile);
            if (chain.Count > 1)
            {
                bundle.Add(chain[^1]);
            }
        }
        else
        {
            var servingPath = Path.Combine(dir, "server.crt");
            var servingKeyPath = Path.Combine(dir, "server.key");
            serving = File.Exists(servingPath) && File.Exists(servingKeyPath) ? X509Certificate2.CreateFromPemFile(servingPath, servingKeyPath) : null!;
            if (serving is null || serving.NotAfter.ToUniversalTime() - now.UtcDateTime < RenewServingBefore || !Names(serving).IsSupersetOf(requiredNames))
            {
                serving?.Dispose();
                serving = IssueServing(ca, caKey, requiredNames, now);
                PrivateFile.Write(servingKeyPath, serving.GetECDsaPrivateKey()!.ExportPkcs8PrivateKeyPem());
                PrivateFile.Write(servingPath, serving.ExportCertificatePem());
            }
        }

        // Kestrel on Linux needs the key in a form it can hand to OpenSSL.
        var usable = Core.Security.TlsKey.Usable(serving);
        serving.Dispose();
        return new CertificateAuthority(ca, caKey, usable, TrustBundle.FromCertificates(bundle));
    }

    /// <summary>Loads the CA from <paramref name="dir"/>, creating it (files 0600) when it is not there.</summary>
    public static (X509Certificate2 Ca, ECDsa Key) LoadOrCreateCa(string dir, DateTimeOffset now)
    {
        Directory.CreateDirectory(dir);
        if (!OperatingSystem.IsWindows())
        {
            File.SetUnixFileMode(dir, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        }

        var caCertPath = Path.Combine(dir, "ca.crt");
        var caKeyPath = Path.Combine(dir, "ca.key");
        X509Certificate2 ca;
        ECDsa caKey;
        if (File.Exists(caCertPath) && File.Exists(caKeyPath))
        {
            ca = X509CertificateLoader.LoadCertificateFromFile(caCertPath);
            caKey = ECDsa.Create();
            caKey.ImportFromPem(File.ReadAllText(caKeyPath));
        }
        else
        {
            caKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
            var request = new CertificateRequest($"CN=Outpost CA {Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(4))}, O=Outpost", caKey, HashAlgorithmName.SHA256);
            request.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, true, 0, true));
            request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
            request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, false));
            using var selfSigned = request.CreateSelfSigned(now.AddMinutes(-5), now.AddYears(10));
            ca = X509CertificateLoader.LoadCertificate(selfSigned.RawData);
            PrivateFile.Write(caKeyPath, caKey.ExportPkcs8PrivateKeyPem());
            PrivateFile.Write(caCertPath, ca.ExportCertificatePem());
        }

        return (ca, caKey);
    }

    /// <summary>The DNS names and IP addresses a generated serving certificate carries for a listen address.</summary>
    public static IReadOnlyCollection<string> NamesFor(IPEndPoint listen)
    {
        ArgumentNullException.ThrowIfNull(listen);
        var names = new SortedSet<string>(StringComparer.Ordinal) { "localhost", "127.0.0.1", "::1" };
        var host = Dns.GetHostName().ToLowerInvariant();
        if (Uri.CheckHostName(host) == UriHostNameType.Dns)
        {
            names.Add(host);
        }

        if (listen.Address.Equals(IPAddress.Any) || listen.Address.Equals(IPAddress.IPv6Any))
        {
            foreach (var address in NetworkInterface.GetAllNetworkInterfaces()
                .Where(n => n.OperationalStatus == OperationalStatus.Up)
                .SelectMany(n => n.GetIPProperties().UnicastAddresses)
                .Select(a => a.Address)
                .Where(a => a.AddressFamily is AddressFamily.InterNetwork || (a.AddressFamily is AddressFamily.InterNetworkV6 && !a.IsIPv6LinkLocal)))
            {
                names.Add(address.ToString());
            }
        }
        else
        {
            names.Add(listen.Address.ToString());
        }

        return names;
    }

    /// <summary>
    /// Signs a node's certificate from its CSR (PKCS#10, DER), whose signature proves it holds
    /// the key. The subject is the node's name whatever the CSR asked for; the certificate is
    /// good for client authentication, and server authentication of the node's direct-wire listener.
    /// </summary>
    public X509Certificate2 IssueNodeCertificate(byte[] csr, string nodeName, DateTimeOffset now, TimeSpan lifetime)
    {
        CertificateRequest request;
        try
        {
            request = CertificateRequest.LoadSigningRequest(csr, HashAlgorithmName.SHA256, CertificateRequestLoadOptions.Default);
        }
        catch (CryptographicException ex)
        {
            throw new FormatException($"the certificate signing request is not valid PKCS#10: {ex.Message}", ex);
        }

        var issued = new CertificateRequest(new X500DistinguishedName("CN=" + nodeName + ", O=Outpost nodes"), request.PublicKey, HashAlgorithmName.SHA256);
        issued.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        issued.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, true));
        // Client auth toward the server and other nodes; server auth for the direct wires nodes of a site open to it.
        issued.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid(TrustBundle.ClientAuthOid), new Oid(TrustBundle.ServerAuthOid)], false));
        issued.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromCertificate(_ca, true, false));
        // Valid from now: only this server checks it, by its own clock, and the node renews by its span.
        return issued.Create(_ca.SubjectName, X509SignatureGenerator.CreateForECDsa(_caKey), now, now + lifetime, RandomSerial());
    }

    private static X509Certificate2 IssueServing(X509Certificate2 ca, ECDsa caKey, IReadOnlyCollection<string> names, DateTimeOffset now)
    {
        var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=outpost-server, O=Outpost", key, HashAlgorithmName.SHA256);
        var san = new SubjectAlternativeNameBuilder();
        foreach (var name in names)
        {
            if (IPAddress.TryParse(name, out var ip))
            {
                san.AddIpAddress(ip);
            }
            else
            {
                san.AddDnsName(name);
            }
        }

        request.CertificateExtensions.Add(san.Build());
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid(TrustBundle.ServerAuthOid)], false));
        request.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromCertificate(ca, true, false));
        using var signed = request.Create(ca.SubjectName, X509SignatureGenerator.CreateForECDsa(caKey), now.AddMinutes(-5), now.AddYears(1), RandomSerial());
        return signed.CopyWithPrivateKey(key);
    }

    private static HashSet<string> Names(X509Certificate2 certificate)
    {
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var extension in certificate.Extensions.OfType<X509SubjectAlternativeNameExtension>())
        {
            names.UnionWith(extension.EnumerateDnsNames());
            names.UnionWith(extension.EnumerateIPAddresses().Select(a => a.ToString()));
        }

        return names;
    }

    private static byte[] RandomSerial()
    {
        var serial = RandomNumberGenerator.GetBytes(16);
        serial[0] &= 0x7f; // positive
        return serial;
    }

    public void Dispose()
    {
        _ca.Dispose();
        _caKey.Dispose();
        ServingCertificate.Dispose();
    }
}
