using System.Globalization;
using Npgsql;

namespace Outpost.Server.Store;

/// <summary>Reading the datastore setting: the URL form most PostgreSQL hosts hand out, or an Npgsql connection string.</summary>
public sealed partial class PostgresControlPlaneStore
{
    /// <summary>
    /// True when <paramref name="exception"/> says PostgreSQL could not be reached or would not
    /// take the work now (the network, a refused or dropped connection, a server shutting down or
    /// out of connections, a timeout), rather than that the work itself was wrong.
    /// </summary>
    public static bool IsUnavailable(Exception exception) => exception switch
    {
        PostgresException pg => pg.SqlState.StartsWith("08", StringComparison.Ordinal) || pg.SqlState.StartsWith("57P", StringComparison.Ordinal)
            || pg.SqlState is "53300" or "55000" || pg.SqlState.StartsWith("28", StringComparison.Ordinal),
        NpgsqlException => true,
        TimeoutException or System.Net.Sockets.SocketException => true,
        _ => exception.InnerException is { } inner && IsUnavailable(inner),
    };

    /// <summary>
    /// An Npgsql connection string from <c>postgres://user:password@host:port/database?sslmode=require</c>
    /// (or <c>postgresql://</c>; the host may instead be a Unix socket directory, <c>?host=/run/postgresql</c>),
    /// or from a key=value connection string as it is. A malformed one throws <see cref="ArgumentException"/>
    /// naming what is wrong, never quoting the password.
    /// </summary>
    public static string ConnectionStringFrom(string datastore)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(datastore);
        var text = datastore.Trim();
        var schemeEnd = text.IndexOf("://", StringComparison.Ordinal);
        if (schemeEnd >= 0)
        {
            var scheme = text[..schemeEnd];
            if (!scheme.Equals("postgres", StringComparison.OrdinalIgnoreCase) && !scheme.Equals("postgresql", StringComparison.OrdinalIgnoreCase))
            {
                throw Invalid($"the scheme \"{scheme}://\" is not PostgreSQL's: use postgres:// or postgresql://");
            }

            return FromUrl(text[(schemeEnd + 3)..]);
        }

        if (!text.Contains('=', StringComparison.Ordinal))
        {
            throw Invalid("it is neither a postgres:// URL nor a key=value connection string");
        }

        try
        {
            return new NpgsqlConnectionStringBuilder(text).ConnectionString;
        }
        catch (Exception ex) when (ex is ArgumentException or FormatException or OverflowException or InvalidCastException)
        {
            throw Invalid($"the connection string is not valid: {ex.Message}", ex);
        }
    }

    private static string FromUrl(string rest)
    {
        var builder = new NpgsqlConnectionStringBuilder();
        var queryStart = rest.IndexOf('?', StringComparison.Ordinal);
        var query = queryStart < 0 ? "" : rest[(queryStart + 1)..];
        rest = queryStart < 0 ? rest : rest[..queryStart];
        var pathStart = rest.IndexOf('/', StringComparison.Ordinal);
        var authority = pathStart < 0 ? rest : rest[..pathStart];
        if (pathStart >= 0 && rest.Length > pathStart + 1)
        {
            builder.Database = Decode(rest[(pathStart + 1)..]);
        }

        var at = authority.LastIndexOf('@');
        if (at >= 0)
        {
            var userInfo = authority[..at];
            var colon = userInfo.IndexOf(':', StringComparison.Ordinal);
            var user = Decode(colon < 0 ? userInfo : userInfo[..colon]);
            if (user.Length > 0)
            {
                builder.Username = user;
            }

            if (colon >= 0)
            {
                builder.Password = Decode(userInfo[(colon + 1)..]);
            }
        }

        var hosts = authority[(at + 1)..];
        if (hosts.Length > 0)
        {
            var parsed = hosts.Split(',').Select(ParseHost).ToList();
            if (parsed.Count == 1)
            {
                builder.Host = parsed[0].Host;
                if (parsed[0].Port is { } port)
                {
                    builder.Port = port;
                }
            }
            else
            {
                // Several hosts: Npgsql takes "host:port" per entry.
                builder.Host = string.Join(',', parsed.Select(h => h.Port is { } port ? $"{h.Host}:{port}" : h.Host));
            }
        }

        foreach (var pair in query.Split('&', StringSplitOptions.RemoveEmptyEntries))
        {
            var equals = pair.IndexOf('=', StringComparison.Ordinal);
            if (equals <= 0)
            {
                throw Invalid($"the URL parameter \"{Decode(equals < 0 ? pair : pair[..equals])}\" has no value (write name=value)");
            }

            var name = Decode(pair[..equals]);
            var value = Decode(pair[(equals + 1)..]);
            switch (name)
            {
                case "host":
                    builder.Host = value;
                    break;
                case "port":
                    builder.Port = ParsePort(value);
                    break;
                case "dbname":
                    builder.Database = value;
                    break;
                case "user":
                    builder.Username = value;
                    break;
                case "password":
                    builder.Password = value;
                    break;
                case "sslmode":
                    builder.SslMode = value switch
                    {
                        "disable" => SslMode.Disable,
                        "allow" => SslMode.Allow,
                        "prefer" => SslMode.Prefer,
                        "require" => SslMode.Require,
                        "verify-ca" => SslMode.VerifyCA,
                        "verify-full" => SslMode.VerifyFull,
                        _ => throw Invalid($"sslmode \"{value}\" is not one of disable, allow, prefer, require, verify-ca, verify-full"),
                    };
                    break;
                case "sslrootcert":
                    builder.RootCertificate = value;
                    break;
                case "sslcert":
                    builder.SslCertificate = value;
                    break;
                case "sslkey":
                    builder.SslKey = value;
                    break;
                case "sslpassword":
                    builder.SslPassword = value;
                    break;
                case "application_name":
                    builder.ApplicationName = value;
                    break;
                case "connect_timeout":
                    builder.Timeout = int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var seconds) && seconds <= 1024
                        ? seconds
                        : throw Invalid($"connect_timeout \"{value}\" is not a number of seconds from 0 to 1024");
                    break;
                case "options":
                    builder.Options = value;
                    break;
                case "target_session_attrs":
                    builder.TargetSessionAttributes = value;
                    break;
                default:
                    throw Invalid($"the URL parameter \"{name}\" is not supported (use host, port, dbname, user, password, sslmode, sslrootcert, sslcert, sslkey, " +
                        "sslpassword, application_name, connect_timeout, options or target_session_attrs)");
            }
        }

        if (string.IsNullOrEmpty(builder.Host))
        {
            throw Invalid("the URL names no host: give one (postgres://user@host:5432/database) or a socket directory (?host=/run/postgresql)");
        }

        return builder.ConnectionString;
    }

    private static (string Host, int? Port) ParseHost(string entry)
    {
        string host;
        string? port = null;
        if (entry.StartsWith('['))
        {
            // [IPv6]:port
            var close = entry.IndexOf(']', StringComparison.Ordinal);
            if (close < 0 || (close + 1 < entry.Length && entry[close + 1] != ':'))
            {
                throw Invalid($"the host \"{entry}\" is not a bracketed IPv6 address ([::1] or [::1]:5432)");
            }

            host = entry[1..close];
            port = close + 1 < entry.Length ? entry[(close + 2)..] : null;
        }
        else
        {
            var colon = entry.IndexOf(':', StringComparison.Ordinal);
            if (colon >= 0 && entry.IndexOf(':', colon + 1) >= 0)
            {
                throw Invalid($"the host \"{entry}\" has more than one ':' (an IPv6 address goes in brackets: [::1]:5432)");
            }

            host = Decode(colon < 0 ? entry : entry[..colon]);
            port = colon < 0 ? null : entry[(colon + 1)..];
        }

        if (host.Length == 0)
        {
            throw Invalid($"the host \"{entry}\" is empty before its port");
        }

        return (host, port is null ? null : ParsePort(port));
    }

    private static int ParsePort(string port) =>
        int.TryParse(port, NumberStyles.None, CultureInfo.InvariantCulture, out var number) && number is > 0 and <= 65535
            ? number
            : throw Invalid($"the port \"{port}\" is not a number from 1 to 65535");

    private static string Decode(string part) => Uri.UnescapeDataString(part);

    private static ArgumentException Invalid(string problem, Exception? inner = null) =>
        new($"invalid PostgreSQL datastore: {problem}", inner);
}
