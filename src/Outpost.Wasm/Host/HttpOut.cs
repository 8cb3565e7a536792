namespace Outpost.Wasm.Host;

/// <summary>
/// What a guest's outbound request may be: a method, an absolute http(s) URL whose host is on the
/// app's http-out allow-list, "Name: value" header lines, and a body. Anything else is refused
/// here, before any byte leaves the node, with the reason for the app's log.
/// </summary>
public static class HttpOut
{
    /// <summary>Headers the host sets itself (from the URL and the body); a guest may not.</summary>
    private static readonly HashSet<string> Reserved = new(StringComparer.OrdinalIgnoreCase)
    {
        "Host", "Content-Length", "Transfer-Encoding", "Connection", "Upgrade", "Keep-Alive", "TE", "Trailer", "Proxy-Connection",
    };

    /// <summary>The request, or null with <paramref name="refusal"/> saying what is wrong or not allowed.</summary>
    public static HttpOutRequest? Parse(string method, string url, string headers, ReadOnlySpan<byte> body, IReadOnlySet<string> allowed, out string? refusal)
    {
        ArgumentNullException.ThrowIfNull(method);
        ArgumentNullException.ThrowIfNull(url);
        ArgumentNullException.ThrowIfNull(headers);
        ArgumentNullException.ThrowIfNull(allowed);
        refusal = null;
        if (method.Length is 0 or > 16 || !method.All(char.IsAsciiLetterUpper))
        {
            refusal = $"'{method}' is not an HTTP method (GET, POST, ...)";
            return null;
        }

        if (!Uri.TryCreate(url, UriKind.Absolute, out var uri) || (uri.Scheme != Uri.UriSchemeHttp && uri.Scheme != Uri.UriSchemeHttps) || uri.UserInfo.Length > 0)
        {
            refusal = "not an absolute http:// or https:// URL (with no user info)";
            return null;
        }

        var host = uri.IdnHost.ToLowerInvariant();
        if (!allowed.Contains(host))
        {
            refusal = allowed.Count == 0
                ? $"host '{host}' is not allowed: the app's http-out allow-list is empty"
                : $"host '{host}' is not on the app's http-out allow-list ({string.Join(", ", allowed.Order(StringComparer.Ordinal))})";
            return null;
        }

        if (host.EndsWith(".mesh", StringComparison.Ordinal) && uri.Scheme != Uri.UriSchemeHttp)
        {
            refusal = $"{host} is a mesh service, reached over the mesh's own mutual TLS: use http://{host}/";
            return null;
        }

        var parsed = new List<KeyValuePair<string, string>>();
        foreach (var raw in headers.Split('\n'))
        {
            var line = raw.TrimEnd('\r');
            if (line.Length == 0)
            {
                continue;
            }

            var colon = line.IndexOf(':', StringComparison.Ordinal);
            var name = colon > 0 ? line[..colon] : "";
            if (name.Length == 0 || !name.All(IsTokenChar))
            {
                refusal = $"header line '{line}' is not 'Name: value'";
                return null;
            }

            if (Reserved.Contains(name))
            {
                refusal = $"header '{name}' is set by the host, not the app";
                return null;
            }

            parsed.Add(new(name, line[(colon + 1)..].Trim()));
        }

        return new HttpOutRequest(method, uri, parsed, body.ToArray());
    }

    private static bool IsTokenChar(char c) => char.IsAsciiLetterOrDigit(c) || "!#$%&'*+-.^_`|~".Contains(c, StringComparison.Ordinal);
}
