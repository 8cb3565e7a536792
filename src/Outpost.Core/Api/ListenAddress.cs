using System.Globalization;
using System.Net;

namespace Outpost.Core.Api;

/// <summary>Parses <c>host:port</c> (or <c>[v6]:port</c>) listen addresses.</summary>
public static class ListenAddress
{
    public static IPEndPoint Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var colon = text.LastIndexOf(':');
        if (colon <= 0 || !int.TryParse(text[(colon + 1)..], NumberStyles.None, CultureInfo.InvariantCulture, out var port) || port > 65535)
        {
            throw new ArgumentException($"'{text}' is not a listen address: expected HOST:PORT, e.g. 127.0.0.1:7440");
        }

        var host = text[..colon].Trim('[', ']');
        if (host == "localhost")
        {
            return new IPEndPoint(IPAddress.Loopback, port);
        }

        if (!IPAddress.TryParse(host, out var address))
        {
            throw new ArgumentException($"'{host}' is not an IP address: listen on an address such as 127.0.0.1");
        }

        return new IPEndPoint(address, port);
    }

    /// <summary><see cref="Parse"/>, false instead of an exception.</summary>
    public static bool TryParse(string text, out IPEndPoint? endpoint)
    {
        try
        {
            endpoint = Parse(text);
            return true;
        }
        catch (ArgumentException)
        {
            endpoint = null;
            return false;
        }
    }
}
