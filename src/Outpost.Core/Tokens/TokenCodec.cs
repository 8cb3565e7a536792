using System.Security.Cryptography;
using System.Text;

namespace Outpost.Core.Tokens;

/// <summary>
/// Token strings are <c>op{a|j|n}_{id}_{secret}</c>: the id finds the record, the secret is
/// checked against its SHA-256 in constant time, and the prefix tells a human what it is.
/// A join token from a TLS server also ends in <c>_{ca}</c>, the SHA-256 fingerprint of the
/// server's CA bundle: the agent trusts only a server that proves it holds that CA.
/// </summary>
public static class TokenCodec
{
    public sealed record Issued(string Token, TokenRecord Record);

    public static Issued Issue(TokenKind kind, DateTimeOffset now, string? subject = null, DateTimeOffset? expiresAt = null, string? description = null,
        string? role = null, int? maxUses = null, IReadOnlyDictionary<string, string>? labels = null)
    {
        var id = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(6));
        var secret = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(20));
        var record = new TokenRecord
        {
            Id = id,
            Kind = kind,
            SecretHash = Hash(secret),
            Subject = subject,
            CreatedAt = now,
            ExpiresAt = expiresAt,
            Description = description,
            Role = kind == TokenKind.Api ? role ?? Roles.Admin : null,
            MaxUses = maxUses,
            Labels = labels ?? new Dictionary<string, string>(),
        };
        return new Issued($"{Prefix(kind)}_{id}_{secret}", record);
    }

    /// <summary>Splits a token string; false when it is not shaped like one of ours.</summary>
    public static bool TryParse(string? token, out TokenKind kind, out string id, out string secret)
    {
        kind = default;
        id = secret = "";
        var parts = token?.Trim().Split('_');
        if (parts is not { Length: 3 or 4 } || parts[1].Length != 12 || parts[2].Length != 40
            || (parts.Length == 4 && (parts[0] != "opj" || !IsFingerprint(parts[3]))))
        {
            return false;
        }

        TokenKind? parsed = parts[0] switch
        {
            "opa" => TokenKind.Api,
            "opj" => TokenKind.Join,
            "opn" => TokenKind.Node,
            _ => null,
        };
        if (parsed is null)
        {
            return false;
        }

        kind = parsed.Value;
        id = parts[1];
        secret = parts[2];
        return true;
    }

    /// <summary>A join token that also pins the CA bundle with this fingerprint.</summary>
    public static string WithPin(string token, string fingerprint)
    {
        ArgumentNullException.ThrowIfNull(token);
        return IsFingerprint(fingerprint) ? $"{token}_{fingerprint}" : throw new ArgumentException("a CA fingerprint is 64 lowercase hex characters", nameof(fingerprint));
    }

    /// <summary>The CA fingerprint a join token pins, or null when it pins none.</summary>
    public static string? PinOf(string? token) =>
        TryParse(token, out var kind, out _, out _) && kind == TokenKind.Join && token!.Trim().Split('_') is { Length: 4 } parts ? parts[3] : null;

    private static bool IsFingerprint(string text) => text.Length == 64 && text.All(c => char.IsAsciiHexDigitLower(c) || char.IsAsciiDigit(c));

    /// <summary>True when the secret matches the record, it is of the expected kind, and it has not expired.</summary>
    public static bool Verify(TokenRecord record, TokenKind kind, string secret, DateTimeOffset now)
    {
        ArgumentNullException.ThrowIfNull(record);
        var expected = Encoding.ASCII.GetBytes(record.SecretHash);
        var actual = Encoding.ASCII.GetBytes(Hash(secret));
        return CryptographicOperations.FixedTimeEquals(expected, actual)
            && record.Kind == kind
            && (record.ExpiresAt is null || record.ExpiresAt > now);
    }

    private static string Hash(string secret) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(secret)));

    private static string Prefix(TokenKind kind) => kind switch
    {
        TokenKind.Api => "opa",
        TokenKind.Join => "opj",
        _ => "opn",
    };
}
