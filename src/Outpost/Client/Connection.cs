using Outpost.Core.Api;
using Outpost.Core.Manifests;

namespace Outpost.Client;

/// <summary>
/// Where the client connects: --server/--token, else OUTPOST_SERVER/OUTPOST_TOKEN, else
/// --config or OUTPOST_CONFIG, else ~/.outpost/config.yaml.
/// </summary>
internal static class Connection
{
    public static string UserConfigPath =>
        Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".outpost", "config.yaml");

    public static ApiClient Resolve(string? server, string? token, string? configPath)
    {
        server ??= Environment.GetEnvironmentVariable("OUTPOST_SERVER");
        token ??= Environment.GetEnvironmentVariable("OUTPOST_TOKEN");
        if (server is null || token is null)
        {
            var path = configPath ?? Environment.GetEnvironmentVariable("OUTPOST_CONFIG") ?? UserConfigPath;
            if (!File.Exists(path))
            {
                throw new ManifestException(
                    $"no connection settings: pass --server and --token, set OUTPOST_SERVER and OUTPOST_TOKEN, or point --config at the config.yaml that `outpost server` writes (looked for {path})");
            }

            var config = ClientConfig.Parse(File.ReadAllText(path), path);
            server ??= config.Server;
            token ??= config.Token;
        }

        return new ApiClient(server, token);
    }

    /// <summary>Writes a config file readable only by its owner.</summary>
    public static void Write(string path, ClientConfig config)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        var temp = path + ".tmp";
        File.WriteAllText(temp, config.ToYaml());
        if (!OperatingSystem.IsWindows())
        {
            File.SetUnixFileMode(temp, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        }

        File.Move(temp, path, overwrite: true);
    }
}
