using Outpost.Core.Api;
using Outpost.Core.Manifests;

namespace Outpost.Client;

/// <summary>
/// Where the client connects: --server/--token, else OUTPOST_SERVER/OUTPOST_TOKEN, else
/// --config or OUTPOST_CONFIG, else ~/.outpost/config.yaml. A TLS server is verified against
/// the CA bundle in that config file (for the same server), else OUTPOST_CA_FILE, else the
/// system's trust store (a brought, publicly trusted certificate).
/// </summary>
internal static class Connection
{
    public static string UserConfigPath =>
        Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".outpost", "config.yaml");

    public static ApiClient Resolve(string? server, string? token, string? configPath)
    {
        server ??= Environment.GetEnvironmentVariable("OUTPOST_SERVER");
        token ??= Environment.GetEnvironmentVariable("OUTPOST_TOKEN");
        var path = configPath ?? Environment.GetEnvironmentVariable("OUTPOST_CONFIG") ?? UserConfigPath;
        var config = File.Exists(path) ? ClientConfig.Parse(File.ReadAllText(path), path) : null;
        if (server is null || token is null)
        {
            if (config is null)
            {
                throw new ManifestException(
                    $"no connection settings: pass --server and --token, set OUTPOST_SERVER and OUTPOST_TOKEN, or point --config at the config.yaml that `outpost server` writes (looked for {path})");
            }

            server ??= config.Server;
            token ??= config.Token;
        }

        if (!Uri.TryCreate(server, UriKind.Absolute, out var url) || url.Scheme is not ("https" or "http") || url.Host.Length == 0)
        {
            throw new ApiException(0, "BadServer", $"server '{server}' is not an http(s) URL: write it with its scheme, e.g. https://{server.Split("://")[^1].TrimEnd('/')}");
        }

        var ca = config is not null && SameServer(config.Server, url) ? config.CertificateAuthorityPem : null;
        if (ca is null && Environment.GetEnvironmentVariable("OUTPOST_CA_FILE") is { Length: > 0 } caFile)
        {
            ca = File.ReadAllText(caFile);
        }

        if (ca is not null)
        {
            PinnedTrust.SkipSystemStore();
        }

        return new ApiClient(server, token, ca);
    }

    /// <summary>
    /// The config's server, however it was typed: a trailing slash, or localhost for 127.0.0.1,
    /// is still the server whose CA the config carries.
    /// </summary>
    private static bool SameServer(string configured, Uri url)
    {
        if (!Uri.TryCreate(configured, UriKind.Absolute, out var other) || other.Scheme != url.Scheme || other.Port != url.Port)
        {
            return false;
        }

        return string.Equals(other.IdnHost, url.IdnHost, StringComparison.OrdinalIgnoreCase) || (other.IsLoopback && url.IsLoopback);
    }

    /// <summary>Writes a config file readable only by its owner.</summary>
    public static void Write(string path, ClientConfig config)
    {
        ArgumentNullException.ThrowIfNull(config);
        Core.Security.PrivateFile.Write(path, config.ToYaml());
    }
}
