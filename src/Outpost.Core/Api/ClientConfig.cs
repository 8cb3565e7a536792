using System.Text;
using Outpost.Core.Manifests;

namespace Outpost.Core.Api;

/// <summary>
/// The client's connection file (<c>config.yaml</c>): where the server is, which token to
/// present, and (for a TLS server) the CA bundle to trust, base64 PEM as kubeconfig spells it.
/// </summary>
public sealed record ClientConfig(string Server, string Token, string? CertificateAuthorityPem = null)
{
    public string ToYaml()
    {
        var yaml = new StringBuilder()
            .AppendLine("# Outpost client configuration. Keep it private: the token grants admin access.")
            .AppendLine($"server: {Server}")
            .AppendLine($"token: {Token}");
        if (CertificateAuthorityPem is not null)
        {
            yaml.AppendLine($"certificate-authority-data: {Convert.ToBase64String(Encoding.UTF8.GetBytes(CertificateAuthorityPem))}");
        }

        return yaml.ToString();
    }

    /// <summary>
    /// The same connection as a kubeconfig, so kubectl talks to Outpost: one cluster, one
    /// user with the bearer token, one context, current.
    /// </summary>
    public string ToKubeconfig(string name = "outpost")
    {
        var yaml = new StringBuilder()
            .AppendLine("# kubectl configuration for Outpost. Keep it private: the token grants admin access.")
            .AppendLine("apiVersion: v1")
            .AppendLine("kind: Config")
            .AppendLine("clusters:")
            .AppendLine($"- name: {name}")
            .AppendLine("  cluster:")
            .AppendLine($"    server: {Server}");
        if (CertificateAuthorityPem is not null)
        {
            yaml.AppendLine($"    certificate-authority-data: {Convert.ToBase64String(Encoding.UTF8.GetBytes(CertificateAuthorityPem))}");
        }

        return yaml
            .AppendLine("users:")
            .AppendLine($"- name: {name}-admin")
            .AppendLine("  user:")
            .AppendLine($"    token: {Token}")
            .AppendLine("contexts:")
            .AppendLine($"- name: {name}")
            .AppendLine("  context:")
            .AppendLine($"    cluster: {name}")
            .AppendLine($"    user: {name}-admin")
            .AppendLine($"current-context: {name}")
            .ToString();
    }

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

        string? ca = null;
        if (body["certificate-authority-data"]?.GetValue<string>() is { } data)
        {
            try
            {
                ca = Encoding.UTF8.GetString(Convert.FromBase64String(data));
            }
            catch (FormatException)
            {
                throw new ManifestException($"{source}: 'certificate-authority-data' is not base64");
            }
        }

        return new ClientConfig(server, token, ca);
    }
}
