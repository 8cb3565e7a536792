using System.Security.Cryptography;
using System.Text.RegularExpressions;

namespace Outpost.Core.Resources;

/// <summary>Content digests in the OCI form <c>sha256:&lt;64 lowercase hex&gt;</c>.</summary>
public static partial class Digest
{
    public static string Compute(ReadOnlySpan<byte> content) =>
        "sha256:" + Convert.ToHexStringLower(SHA256.HashData(content));

    public static bool IsValid(string? digest) => digest is not null && DigestPattern().IsMatch(digest);

    /// <summary>A file-name-safe form, for local caches.</summary>
    public static string ToFileName(string digest) => digest.Replace(':', '-');

    [GeneratedRegex("^sha256:[0-9a-f]{64}$")]
    private static partial Regex DigestPattern();
}
