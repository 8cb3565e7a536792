using System.Net.Security;
using Microsoft.Extensions.Logging;
using Outpost.Agent.Hosting;
using Outpost.Core.Security;
using Outpost.Core.Tokens;

namespace Outpost.Agent.Sync;

/// <summary>
/// Which server certificates this node accepts: only those chaining to the CA bundle its join
/// token pins. On first contact the agent fetches the bundle from /cacerts (sending nothing
/// but that request), checks its SHA-256 against the pin, and keeps it in DATA/ca.crt; every
/// later connection, the join included, is verified against the kept bundle.
/// </summary>
public sealed partial class ServerTrust(AgentOptions options, ILogger<ServerTrust> logger)
{
    private TrustBundle? _bundle;
    private bool _warned;

    private string BundlePath => Path.Combine(options.DataDir, "ca.crt");

    /// <summary>The bundle to verify the server at <paramref name="server"/> (any replica) with; null for an http:// server (no TLS).</summary>
    public async Task<TrustBundle?> EnsureAsync(string server, CancellationToken ct)
    {
        var url = new Uri(server);
        if (url.Scheme == Uri.UriSchemeHttp)
        {
            if (!_warned)
            {
                LogCleartext(logger, server);
                _warned = true;
            }

            return null;
        }

        if (_bundle is not null)
        {
            return _bundle;
        }

        if (File.Exists(BundlePath))
        {
            return _bundle = TrustBundle.FromPem(await File.ReadAllTextAsync(BundlePath, ct));
        }

        var pin = TokenCodec.PinOf(options.JoinToken)
            ?? throw new FatalAgentException(options.JoinToken is null
                ? "this node holds no CA for the server: pass a join token (--token) from `outpost token create`, which pins the server's CA"
                : "the join token pins no CA fingerprint, so the server cannot be verified: create a token with `outpost token create` on a server running TLS");

        string pem;
        using (var handler = new SocketsHttpHandler
        {
            ConnectTimeout = TimeSpan.FromSeconds(5),
            // Nothing secret is sent on this connection, and what comes back is trusted only if
            // it matches the pin below: the same bootstrap as K3s's token CA hash.
#pragma warning disable CA5359
            SslOptions = new SslClientAuthenticationOptions { RemoteCertificateValidationCallback = (_, _, _, _) => true },
#pragma warning restore CA5359
        })
        using (var http = new HttpClient(handler) { Timeout = TimeSpan.FromSeconds(10) })
        {
            pem = await http.GetStringAsync(new Uri(url, "/cacerts"), ct);
        }

        TrustBundle bundle;
        try
        {
            bundle = TrustBundle.FromPem(pem);
        }
        catch (FormatException ex)
        {
            throw new FatalAgentException($"the server at {server} answered /cacerts with no usable CA ({ex.Message}): refusing to connect");
        }

        if (!bundle.Matches(pin))
        {
            throw new FatalAgentException($"the server at {server} presents CA fingerprint {bundle.Fingerprint}, but the join token pins {pin}: refusing to connect");
        }

        PrivateFile.Write(BundlePath, bundle.Pem);
        LogPinned(logger, server, bundle.Fingerprint);
        return _bundle = bundle;
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Verified the CA of {Server} against the join token's pin ({Fingerprint}) and kept it")]
    private static partial void LogPinned(ILogger logger, string server, string fingerprint);

    [LoggerMessage(Level = LogLevel.Warning, Message = "{Server} is plain http: the sync stream and its credentials travel in cleartext")]
    private static partial void LogCleartext(ILogger logger, string server);
}
