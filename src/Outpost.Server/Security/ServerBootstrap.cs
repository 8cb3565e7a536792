using System.Security.Cryptography;
using System.Text;
using Outpost.Core.Security;
using Outpost.Server.Hosting;
using Outpost.Server.Store;

namespace Outpost.Server.Security;

/// <summary>
/// What every server on one datastore must hold alike: the fleet CA (its certificate and key:
/// node certificates and join tokens' pins must hold on every server) and the secrets key (a
/// Secret sealed by one server is opened by another). As k3s does with its bootstrap data, the
/// first server stores its set in the datastore, sealed with the server token (AES-256-GCM under
/// a PBKDF2 key of the token, the file's name authenticated with it); every later server
/// opens that set and writes it into its data dir before it starts. A token that does not open
/// the set stops the server, naming the cause, before it writes anything.
/// </summary>
public static class ServerBootstrap
{
    /// <summary>The shared files, by path under the data dir.</summary>
    public static readonly IReadOnlyList<string> Files = ["tls/ca.crt", "tls/ca.key", "secrets.key"];

    private const byte Version = 1;
    private const int SaltBytes = 16;
    private const int NonceBytes = 12;
    private const int TagBytes = 16;
    private const int Iterations = 100_000;

    public static async Task ShareAsync(ServerOptions options, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentException.ThrowIfNullOrEmpty(options.Datastore);
        var token = Token(options);
        await using var store = new PostgresControlPlaneStore(options.Datastore, options.TimeProvider);
        var shared = await store.ShareBootstrapAsync(() => Files.ToDictionary(f => f, f => Seal(f, Local(options, f), token), StringComparer.Ordinal), cancellationToken);

        // Open every entry before writing any: all or nothing.
        var opened = new Dictionary<string, byte[]>(StringComparer.Ordinal);
        foreach (var file in Files)
        {
            if (!shared.TryGetValue(file, out var sealedValue))
            {
                throw new InvalidOperationException($"the datastore's shared server data has no {file}: it was stored by an incompatible server");
            }

            opened[file] = Open(file, sealedValue, token, options);
        }

        foreach (var (file, content) in opened)
        {
            var path = Path.Combine(options.DataDir, file);
            if (!File.Exists(path) || !File.ReadAllBytes(path).AsSpan().SequenceEqual(content))
            {
                Directory.CreateDirectory(Path.GetDirectoryName(path)!);
                PrivateFile.Write(path, Encoding.UTF8.GetString(content));
                if (file.StartsWith("tls/", StringComparison.Ordinal))
                {
                    // A serving certificate of the CA this one replaces: issued again at start.
                    File.Delete(Path.Combine(options.DataDir, "tls", "server.crt"));
                    File.Delete(Path.Combine(options.DataDir, "tls", "server.key"));
                }
            }
        }
    }

    /// <summary>The token: from --server-token-file, else DATA/server-token (made on first start).</summary>
    private static string Token(ServerOptions options)
    {
        var path = options.ServerTokenFile ?? Path.Combine(options.DataDir, "server-token");
        if (options.ServerTokenFile is null && !File.Exists(path))
        {
            PrivateFile.Write(path, Convert.ToBase64String(RandomNumberGenerator.GetBytes(32)) + "\n", overwrite: false);
        }

        var token = File.Exists(path) ? File.ReadAllText(path).Trim() : throw new InvalidOperationException($"--server-token-file {path} does not exist");
        return token.Length >= 16 ? token : throw new InvalidOperationException($"the server token in {path} is too short: use at least 16 characters (the first server's DATA/server-token)");
    }

    /// <summary>This server's own copy of a shared file, made first when it has none (a first start).</summary>
    private static byte[] Local(ServerOptions options, string file)
    {
        if (file.StartsWith("tls/", StringComparison.Ordinal))
        {
            var (ca, key) = CertificateAuthority.LoadOrCreateCa(Path.Combine(options.DataDir, "tls"), options.TimeProvider.GetUtcNow());
            ca.Dispose();
            key.Dispose();
        }
        else
        {
            SecretBox.LoadOrCreate(Path.Combine(options.DataDir, file)).Dispose();
        }

        return File.ReadAllBytes(Path.Combine(options.DataDir, file));
    }

    private static byte[] Key(string token, ReadOnlySpan<byte> salt) =>
        Rfc2898DeriveBytes.Pbkdf2(Encoding.UTF8.GetBytes(token), salt, Iterations, HashAlgorithmName.SHA256, 32);

    /// <summary>version | salt | nonce | tag | ciphertext.</summary>
    internal static byte[] Seal(string name, byte[] content, string token)
    {
        var sealedValue = new byte[1 + SaltBytes + NonceBytes + TagBytes + content.Length];
        sealedValue[0] = Version;
        var salt = sealedValue.AsSpan(1, SaltBytes);
        var nonce = sealedValue.AsSpan(1 + SaltBytes, NonceBytes);
        RandomNumberGenerator.Fill(salt);
        RandomNumberGenerator.Fill(nonce);
        using var aes = new AesGcm(Key(token, salt), TagBytes);
        aes.Encrypt(nonce, content, sealedValue.AsSpan(1 + SaltBytes + NonceBytes + TagBytes), sealedValue.AsSpan(1 + SaltBytes + NonceBytes, TagBytes), Encoding.UTF8.GetBytes(name));
        return sealedValue;
    }

    private static byte[] Open(string name, byte[] sealedValue, string token, ServerOptions options)
    {
        if (sealedValue.Length < 1 + SaltBytes + NonceBytes + TagBytes || sealedValue[0] != Version)
        {
            throw new InvalidOperationException($"the datastore's shared {name} is not in a form this server knows (version {(sealedValue.Length > 0 ? sealedValue[0] : 0)})");
        }

        var content = new byte[sealedValue.Length - (1 + SaltBytes + NonceBytes + TagBytes)];
        using var aes = new AesGcm(Key(token, sealedValue.AsSpan(1, SaltBytes)), TagBytes);
        try
        {
            aes.Decrypt(sealedValue.AsSpan(1 + SaltBytes, NonceBytes), sealedValue.AsSpan(1 + SaltBytes + NonceBytes + TagBytes), sealedValue.AsSpan(1 + SaltBytes + NonceBytes, TagBytes),
                content, Encoding.UTF8.GetBytes(name));
        }
        catch (AuthenticationTagMismatchException)
        {
            var where = options.ServerTokenFile ?? Path.Combine(options.DataDir, "server-token");
            throw new InvalidOperationException(
                $"the server token ({where}) does not open the CA and secrets key that the first server stored in this datastore: " +
                "give this server that server's token (its DATA/server-token) with --server-token-file");
        }

        return content;
    }
}
