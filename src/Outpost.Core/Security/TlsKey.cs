using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Outpost.Core.Security;

/// <summary>Certificates with their keys in the form TLS on Linux takes.</summary>
public static class TlsKey
{
    // The bytes never leave memory: one round of key derivation protects nothing less than the
    // default 2,000, which cost ~20 ms of CPU at every agent start (a profile of the start).
    private static readonly PbeParameters InMemory = new(PbeEncryptionAlgorithm.Aes128Cbc, HashAlgorithmName.SHA256, iterationCount: 1);

    /// <summary>
    /// A copy of <paramref name="certificate"/> whose private key OpenSSL can use as is (a key
    /// made or imported in process is not, for a TLS server): a round trip through PKCS#12.
    /// </summary>
    public static X509Certificate2 Usable(X509Certificate2 certificate)
    {
        ArgumentNullException.ThrowIfNull(certificate);
        return X509CertificateLoader.LoadPkcs12(certificate.ExportPkcs12(InMemory, password: null), password: null);
    }
}
