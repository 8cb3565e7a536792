using System.Text.RegularExpressions;

namespace Outpost.Core.Resources;

/// <summary>
/// An image reference as a container app names it: <c>[HOST/]NAME[:TAG]</c> or <c>[HOST/]NAME@sha256:...</c>.
/// Images come from the server's own registry: a leading host (a first component with '.' or ':',
/// or <c>localhost</c>) is accepted, as push tools write it, and set aside.
/// </summary>
public sealed partial record ImageReference(string Repository, string? Tag, string? Digest, string? Error = null)
{
    public static ImageReference Parse(string reference)
    {
        ArgumentNullException.ThrowIfNull(reference);
        var rest = reference;
        var slash = rest.IndexOf('/', StringComparison.Ordinal);
        if (slash > 0 && (rest[..slash].Contains('.', StringComparison.Ordinal) || rest[..slash].Contains(':', StringComparison.Ordinal) || rest[..slash] == "localhost"))
        {
            rest = rest[(slash + 1)..];
        }

        string? digest = null;
        string? tag = null;
        var at = rest.IndexOf('@', StringComparison.Ordinal);
        if (at >= 0)
        {
            digest = rest[(at + 1)..];
            rest = rest[..at];
            if (!Resources.Digest.IsValid(digest))
            {
                return new ImageReference(rest, null, null, $"'{reference}': '{digest}' is not a digest (sha256:<64 lowercase hex>)");
            }
        }
        else
        {
            var colon = rest.LastIndexOf(':');
            if (colon >= 0)
            {
                tag = rest[(colon + 1)..];
                rest = rest[..colon];
                if (!TagPattern().IsMatch(tag))
                {
                    return new ImageReference(rest, null, null, $"'{reference}': '{tag}' is not a tag ([A-Za-z0-9_][A-Za-z0-9._-], at most 128)");
                }
            }
            else
            {
                tag = "latest";
            }
        }

        return NamePattern().IsMatch(rest) && rest.Length <= 255
            ? new ImageReference(rest, tag, digest)
            : new ImageReference(rest, null, null, $"'{reference}': '{rest}' is not a repository name (lowercase [a-z0-9] components joined by '.', '_', '__' or '-', separated by '/')");
    }

    [GeneratedRegex("^[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*)*$")]
    private static partial Regex NamePattern();

    [GeneratedRegex("^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")]
    private static partial Regex TagPattern();
}
