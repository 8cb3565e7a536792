using System.Text;
using Outpost.Core.Manifests;

namespace Outpost.Core.Api;

/// <summary>The client's connection file (<c>config.yaml</c>): where the server is and which token to present.</summary>
public sealed record ClientConfig(string Server, string Token)
{
    public string ToYaml() => new StringBuilder()
        .AppendLine("# Outpost client configuration. Keep it private: the token grants admin access.")
        .AppendLine($"server: {Server}")
        .AppendLine($"token: {Token}")
        .ToString();

    /// <summary>Parses a config file's text; the message names what is missing.</summary>
    public static ClientConfig Parse(string yaml, string source)
    {
        var docs = YamlManifestReader.Read(yaml, source);
        var body = docs.Count == 1 ? docs[0].Body : throw new ManifestException($"{source}: expected one YAML document with 'server' and 'token'");
        var server = body["server"]?.GetValue<string>();
        var token = body["token"]?.GetValue<string>();
        if (string.IsNullOrWhiteSpace(server) || string.IsNullOrWhiteSpace(token))
        {
            throw new ManifestException($"{source}: 'server' and 'token' are both required");
        }

        return new ClientConfig(server, token);
    }
}
