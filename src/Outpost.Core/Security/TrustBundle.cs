using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;

namespace Outpost.Core.Security;

/// <summary>
/// The CA certificates a client trusts for one Outpost server, and nothing else: the
/// system's trust store plays no part. Its fingerprint (SHA-256 over the certificates' DER,
/// in order; for a single CA exactly what <c>openssl x509 -fingerprint -sha256</c> prints)
/// is what join tokens pin.
/// </summary>
public sealed class TrustBundle
{
    private TrustBundle(X509Certificate2Collection certificates, string pem)
    {
        Certificates = certificates;
        Pem = pem;
        Fingerprint = ComputeFingerprint(certificates);
    }

    public X509Certificate2Collection Certificates { get; }

    /// <summary>The bundle as PEM, the way the server serves it at /cacerts.</summary>
    public string Pem { get; }

    /// <summary>64 lowercase hex characters.</summary>
    public string Fingerprint { get; }

    public static TrustBundle FromCertificates(IEnumerable<X509Certificate2> certificates)
    {
        ArgumentNullException.ThrowIfNull(certificates);
        var collection = new X509Certificate2Collection();
        var pem = new StringBuilder();
        foreach (var certificate in certificates)
        {
            collection.Add(certificate);
            pem.Append(certificate.ExportCertificatePem()).Append('\n');
        }

        return collection.Count == 0 ? throw new ArgumentException("a trust bundle needs at least one certificate", nameof(certificates)) : new TrustBundle(collection, pem.ToString());
    }

    /// <summary>Reads a PEM bundle; a bundle with no certificate is a <see cref="FormatException"/>.</summary>
    public static TrustBundle FromPem(string pem)
    {
        var collection = new X509Certificate2Collection();
        try
        {
            collection.ImportFromPem(pem);
        }
        catch (CryptographicException ex)
        {
            throw new FormatException($"the CA bundle is not valid PEM: {ex.Message}", ex);
        }

        return collection.Count == 0 ? throw new FormatException("the CA bundle holds no certificate") : FromCertificates(collection);
    }

    public static string ComputeFingerprint(IEnumerable<X509Certificate2> certificates)
    {
        ArgumentNullException.ThrowIfNull(certificates);
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (var certificate in certificates)
        {
            hash.AppendData(certificate.RawData);
        }

        return Convert.ToHexStringLower(hash.GetHashAndReset());
    }

    /// <summary>True when the fingerprint is this bundle's (compared in constant time).</summary>
    public bool Matches(string fingerprint) =>
        fingerprint is not null && CryptographicOperations.FixedTimeEquals(Encoding.ASCII.GetBytes(Fingerprint), Encoding.ASCII.GetBytes(fingerprint.ToLowerInvariant()));

    /// <summary>
    /// Validates a certificate (and the intermediates its peer sent) against this bundle only,
    /// for the given purpose (server or client authentication). Returns null when valid, or why not.
    /// </summary>
    public string? Validate(X509Certificate2 certificate, X509Chain? presented, string purposeOid)
    {
        ArgumentNullException.ThrowIfNull(certificate);
        using var chain = new X509Chain { ChainPolicy = ChainPolicy(purposeOid) };
        if (presented is not null)
        {
            foreach (var element in presented.ChainElements)
            {
                chain.ChainPolicy.ExtraStore.Add(element.Certificate);
            }

            chain.ChainPolicy.ExtraStore.AddRange(presented.ChainPolicy.ExtraStore);
        }

        if (chain.Build(certificate))
        {
            return null;
        }

        return string.Join("; ", chain.ChainStatus.Select(s => s.StatusInformation.Trim()).Where(s => s.Length > 0).Distinct());
    }

    /// <summary>
    /// The chain policy of <see cref="Validate"/>: this bundle's roots only, no revocation fetch, the
    /// purpose required. Given to a TLS handshake as its certificate chain policy, the handshake builds
    /// the one chain that counts (instead of one against the system store and another here).
    /// </summary>
    public X509ChainPolicy ChainPolicy(string purposeOid)
    {
        var policy = new X509ChainPolicy
        {
            TrustMode = X509ChainTrustMode.CustomRootTrust,
            RevocationMode = X509RevocationMode.NoCheck,
        };
        policy.CustomTrustStore.AddRange(Certificates);
        policy.ApplicationPolicy.Add(new Oid(purposeOid));
        return policy;
    }

    /// <summary>True when a handshake built <paramref name="chain"/> under <see cref="ChainPolicy"/> of this bundle (its roots alone).</summary>
    public bool BuiltWithThisBundle(X509Chain chain)
    {
        ArgumentNullException.ThrowIfNull(chain);
        var policy = chain.ChainPolicy;
        return policy.TrustMode == X509ChainTrustMode.CustomRootTrust
            && policy.CustomTrustStore.Count == Certificates.Count
            && policy.CustomTrustStore.Cast<X509Certificate2>().All(c => Certificates.Cast<X509Certificate2>().Any(o => o.RawDataMemory.Span.SequenceEqual(c.RawDataMemory.Span)));
    }

    public const string ServerAuthOid = "1.3.6.1.5.5.7.3.1";

    public const string ClientAuthOid = "1.3.6.1.5.5.7.3.2";

    /// <summary>
    /// A TLS client callback that accepts only a server certificate that chains to this bundle
    /// and names the host dialled. The failure reason goes to <paramref name="rejected"/>.
    /// </summary>
    public RemoteCertificateValidationCallback ServerValidator(Action<string>? rejected = null) => (_, certificate, chain, errors) =>
    {
        if (certificate is null)
        {
            rejected?.Invoke("the server presented no certificate");
            return false;
        }

        if (errors.HasFlag(SslPolicyErrors.RemoteCertificateNameMismatch))
        {
            rejected?.Invoke($"the server's certificate ({certificate.Subject}) does not name the host dialled");
            return false;
        }

        // With ChainPolicy(ServerAuthOid) as the handshake's chain policy, the chain it built is the
        // one that counts: a clean result needs no second build. Otherwise (or without it) build ours,
        // which also says why it fails.
        if (errors == SslPolicyErrors.None && chain is not null && BuiltWithThisBundle(chain))
        {
            return true;
        }

        var problem = Validate(certificate as X509Certificate2 ?? X509CertificateLoader.LoadCertificate(certificate.GetRawCertData()), chain, ServerAuthOid);
        if (problem is not null)
        {
            rejected?.Invoke($"the server's certificate does not chain to the pinned CA ({problem})");
        }

        return problem is null;
    };
}
