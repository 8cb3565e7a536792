using System.CommandLine;

namespace Outpost.Commands;

/// <summary>Connection flags shared by every client verb.</summary>
internal static class CommonOptions
{
    public static readonly Option<string?> Server = new("--server")
    {
        Description = "Server URL (else OUTPOST_SERVER, else the config file)",
        Recursive = true,
    };

    public static readonly Option<string?> Token = new("--token")
    {
        Description = "Bearer token (else OUTPOST_TOKEN, else the config file)",
        Recursive = true,
    };

    public static readonly Option<string?> Config = new("--config")
    {
        Description = "Client config file (else OUTPOST_CONFIG, else ~/.outpost/config.yaml)",
        Recursive = true,
    };

    public static Client.ApiClient Connect(ParseResult result) =>
        Client.Connection.Resolve(result.GetValue(Server), result.GetValue(Token), result.GetValue(Config));
}
