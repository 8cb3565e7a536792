using System.Security.Cryptography;
using System.Text;

namespace Outpost.Core.Security;

/// <summary>
/// Seals secret values with AES-256-GCM under a key kept in the data dir (0600). A sealed
/// value is <c>enc:v1:</c> + base64(nonce | ciphertext | tag); the context (secret name and
/// key) is authenticated too, so a sealed value cannot be moved to another key unnoticed.
/// </summary>
public sealed class SecretBox : IDisposable
{
    public const string Prefix = "enc:v1:";

    /// <summary>What APIs show in place of a secret value.</summary>
    public const string Redacted = "<redacted>";

    private const int NonceBytes = 12;
    private const int TagBytes = 16;
    private readonly Lazy<AesGcm> _aes;

    // The cipher is made at its first use: making it loads OpenSSL (~20 ms), which an agent
    // starting to serve from local state needs only if an app's environment holds a secret.
    private SecretBox(byte[] key) => _aes = new Lazy<AesGcm>(() => new AesGcm(key, TagBytes), LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>Loads the key from <paramref name="path"/>, creating a random one (0600) on first use.</summary>
    public static SecretBox LoadOrCreate(string path)
    {
        if (!File.Exists(path))
        {
            PrivateFile.Write(path, Convert.ToBase64String(RandomNumberGenerator.GetBytes(32)), overwrite: false);
        }

        var key = Convert.FromBase64String(File.ReadAllText(path).Trim());
        return key.Length == 32 ? new SecretBox(key) : throw new CryptographicException($"{path} does not hold a 256-bit key");
    }

    public static bool IsSealed(string value) => value is not null && value.StartsWith(Prefix, StringComparison.Ordinal);

    public string Seal(string plaintext, string context)
    {
        ArgumentNullException.ThrowIfNull(plaintext);
        var data = Encoding.UTF8.GetBytes(plaintext);
        var sealedBytes = new byte[NonceBytes + data.Length + TagBytes];
        var nonce = sealedBytes.AsSpan(0, NonceBytes);
        RandomNumberGenerator.Fill(nonce);
        _aes.Value.Encrypt(nonce, data, sealedBytes.AsSpan(NonceBytes, data.Length), sealedBytes.AsSpan(NonceBytes + data.Length), Encoding.UTF8.GetBytes(context));
        CryptographicOperations.ZeroMemory(data);
        return Prefix + Convert.ToBase64String(sealedBytes);
    }

    /// <summary>Opens a sealed value; a value sealed under another key or context is a <see cref="CryptographicException"/>.</summary>
    public string Open(string sealedValue, string context)
    {
        if (!IsSealed(sealedValue))
        {
            throw new CryptographicException("not a sealed value");
        }

        byte[] bytes;
        try
        {
            bytes = Convert.FromBase64String(sealedValue[Prefix.Length..]);
        }
        catch (FormatException ex)
        {
            throw new CryptographicException("a sealed value is not base64", ex);
        }

        if (bytes.Length < NonceBytes + TagBytes)
        {
            throw new CryptographicException("a sealed value is too short");
        }

        var length = bytes.Length - NonceBytes - TagBytes;
        var plain = new byte[length];
        _aes.Value.Decrypt(bytes.AsSpan(0, NonceBytes), bytes.AsSpan(NonceBytes, length), bytes.AsSpan(NonceBytes + length), plain, Encoding.UTF8.GetBytes(context));
        return Encoding.UTF8.GetString(plain);
    }

    /// <summary>The context a value of secret <paramref name="name"/>, key <paramref name="key"/> is sealed under.</summary>
    public static string ContextOf(string name, string key) => $"Secret/{name}/{key}";

    public void Dispose()
    {
        if (_aes.IsValueCreated)
        {
            _aes.Value.Dispose();
        }
    }
}
