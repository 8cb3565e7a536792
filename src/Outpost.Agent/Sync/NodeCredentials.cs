using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Outpost.Agent.Hosting;
using Outpost.Core.Security;

namespace Outpost.Agent.Sync;

/// <summary>
/// The node's own key pair and certificate, in DATA/node.key and DATA/node.crt (0600). The
/// key never leaves the node: the server sees only a CSR. A renewal writes the new pair in
/// place; connections opened after it present the new certificate.
/// </summary>
public sealed class NodeCredentials(AgentOptions options)
{
    private readonly Lock _lock = new();
    private X509Certificate2? _current;
    private bool _upgradeAsked;

    private string KeyPath => Path.Combine(options.DataDir, "node.key");

    private string CertificatePath => Path.Combine(options.DataDir, "node.crt");

    /// <summary>A new key pair and a CSR for it (CN = node name). Keep the key until the certificate arrives.</summary>
    public (ECDsa Key, byte[] Csr) CreateRequest()
    {
        var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=" + options.NodeName, key, HashAlgorithmName.SHA256);
        return (key, request.CreateSigningRequest());
    }

    /// <summary>Stores a certificate issued for <paramref name="key"/> and makes it current; refuses one that does not match the key or name.</summary>
    public void Save(ECDsa key, byte[] certificateDer)
    {
        ArgumentNullException.ThrowIfNull(key);
        using var issued = X509CertificateLoader.LoadCertificate(certificateDer);
        if (issued.GetNameInfo(X509NameType.SimpleName, forIssuer: false) != options.NodeName)
        {
            throw new InvalidDataException($"the server issued a certificate for '{issued.Subject}', not node '{options.NodeName}'");
        }

        using var withKey = issued.CopyWithPrivateKey(key);
        Directory.CreateDirectory(options.DataDir);
        PrivateFile.Write(KeyPath, key.ExportPkcs8PrivateKeyPem());
        PrivateFile.Write(CertificatePath, issued.ExportCertificatePem());
        lock (_lock)
        {
            _current?.Dispose();
            _current = Core.Security.TlsKey.Usable(withKey);
        }
    }

    /// <summary>The current certificate with its key, or null before the node has joined over TLS.</summary>
    public X509Certificate2? Current
    {
        get
        {
            lock (_lock)
            {
                if (_current is null && File.Exists(KeyPath) && File.Exists(CertificatePath))
                {
                    using var loaded = X509Certificate2.CreateFromPemFile(CertificatePath, KeyPath);
                    _current = Core.Security.TlsKey.Usable(loaded);
                }

                return _current;
            }
        }
    }

    /// <summary>When to renew: with a third of the certificate's lifetime left; at once for one issued before nodes took direct wires (no server auth).</summary>
    public DateTimeOffset? RenewAt
    {
        get
        {
            var current = Current;
            if (current is null)
            {
                return null;
            }

            // Once per run: a server that still issues client-only certificates is not asked again and again.
            if (!_upgradeAsked && !current.Extensions.OfType<X509EnhancedKeyUsageExtension>().Any(e => e.EnhancedKeyUsages.Cast<Oid>().Any(o => o.Value == TrustBundle.ServerAuthOid)))
            {
                _upgradeAsked = true;
                return DateTimeOffset.MinValue;
            }

            var notBefore = new DateTimeOffset(current.NotBefore.ToUniversalTime());
            var notAfter = new DateTimeOffset(current.NotAfter.ToUniversalTime());
            return notBefore + ((notAfter - notBefore) * 2 / 3);
        }
    }

    /// <summary>Forgets the credentials (the node was removed from the fleet).</summary>
    public void Clear()
    {
        lock (_lock)
        {
            _current?.Dispose();
            _current = null;
            File.Delete(KeyPath);
            File.Delete(CertificatePath);
        }
    }
}
