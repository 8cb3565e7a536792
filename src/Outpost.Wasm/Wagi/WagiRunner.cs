using System.Buffers.Text;
using System.Globalization;
using System.Text;
using Outpost.Core.Resources;
using Outpost.Wasm.Hosting;
using Outpost.Wasm.Wasi;

namespace Outpost.Wasm.Wagi;

/// <summary>
/// Serves HTTP through a module by WAGI (CGI over WASI stdio): the request goes in as
/// environment and stdin, the response comes out of stdout as CGI headers and a body.
/// </summary>
public sealed class WagiRunner(WasmHost host)
{
    /// <summary>Runs one request in a fresh instance. Guest failures become 5xx responses, never exceptions.</summary>
    public WagiOutcome Handle(WasmModule module, WagiRequest request, IReadOnlyDictionary<string, string> appEnv, AppLimits limits) =>
        Handle(module, request, new AppEnvironment(appEnv), limits);

    /// <summary>As above, with the app's fixed environment encoded once (the gateway's hot path).</summary>
    public WagiOutcome Handle(WasmModule module, WagiRequest request, AppEnvironment appEnv, AppLimits limits, Host.HostGrant? grant = null, WasiMounts? mounts = null, IReadOnlyDictionary<string, Nn.NnModel>? models = null)
    {
        ArgumentNullException.ThrowIfNull(request);
        ArgumentNullException.ThrowIfNull(limits);
        ArgumentNullException.ThrowIfNull(appEnv);
        var context = CreateContext(request, appEnv, limits, grant, mounts, models);
        var result = host.Run(module, context, limits);
        var stderr = context.CapturedStderr.Length > 0 ? context.CapturedStderr.ToText() : null;
        var memoryLimit = (long)limits.MemoryMiB * 1024 * 1024;
        var outcome = result.Outcome switch
        {
            RunOutcome.TimedOut => Fail(504, result.Error!, stderr) with { Limit = WagiLimit.Timeout },
            RunOutcome.Trapped => Fail(500, $"trap: {result.Error}", stderr),
            RunOutcome.OutputTooLarge => Fail(500, result.Error!, stderr) with { Limit = WagiLimit.Response },
            RunOutcome.Busy => Busy(result.Error!) with { Limit = WagiLimit.Instances },
            _ => Parse(context.CapturedStdout.WrittenMemory, result.ExitCode, stderr),
        };
        var limit = outcome.Limit != WagiLimit.None ? outcome.Limit
            // Linear memory grows in 64 KiB pages: within a page of the limit, a further grow was refused.
            : result.MemoryBytes > memoryLimit - 65536 ? WagiLimit.Memory
            : context.VolumeFull ? WagiLimit.Volume
            : WagiLimit.None;
        return outcome with { MemoryBytes = result.MemoryBytes, Notes = context.Notes, Limit = limit };
    }

    /// <summary>The run's context: the route as its one argument, the app's and the request's variables, the body on stdin.</summary>
    internal static WasiContext CreateContext(WagiRequest request, AppEnvironment appEnv, AppLimits limits, Host.HostGrant? grant = null, WasiMounts? mounts = null, IReadOnlyDictionary<string, Nn.NnModel>? models = null)
    {
        var env = new StringBlock().AddAll(appEnv.Block);
        WriteEnvironment(env, request);
        var args = new StringBlock().Append(request.Route).End();
        return new WasiContext(args, env, request.Body, limits.MaxResponseBytes, 64 * 1024) { Grant = grant, Mounts = mounts, Models = models };
    }

    /// <summary>The request's CGI variables, as the guest will see them (a test's view; the caller disposes it).</summary>
    internal static StringBlock RequestEnvironment(WagiRequest request)
    {
        var env = new StringBlock();
        WriteEnvironment(env, request);
        return env;
    }

    /// <summary>Writes the request's CGI variables (RFC 3875, and WAGI's X_ ones) straight into the guest's environment.</summary>
    private static void WriteEnvironment(StringBlock env, WagiRequest request)
    {
        var path = request.Path.AsSpan();
        var pathInfo = request.Route == "/" ? path : path[Math.Min(request.Route.Length, path.Length)..];
        env.Add("GATEWAY_INTERFACE", "CGI/1.1");
        env.Add("SERVER_SOFTWARE", "Outpost");
        env.Add("SERVER_PROTOCOL", "HTTP/1.1");
        env.Add("SERVER_NAME", request.Host);
        env.Append("SERVER_PORT=").Append(request.Port).End();
        env.Add("REQUEST_METHOD", request.Method);
        env.Add("SCRIPT_NAME", request.Route == "/" ? "" : request.Route);
        env.Append("PATH_INFO=").Append(pathInfo).End();
        env.Append("PATH_TRANSLATED=").Append(pathInfo).End();
        env.Add("QUERY_STRING", request.Query);
        AppendAddress(env.Append("REMOTE_ADDR="), request).End();
        AppendAddress(env.Append("REMOTE_HOST="), request).End();
        env.Append("CONTENT_LENGTH=").Append(request.Body.Length).End();
        env.Add("X_MATCHED_ROUTE", request.Route);
        env.Append("X_RAW_PATH_INFO=").Append(pathInfo).End();
        env.Append("X_FULL_URL=").Append(request.Scheme).Append("://").Append(request.Host).Append(':').Append(request.Port).Append(request.Path);
        if (request.Query.Length > 0)
        {
            env.Append('?').Append(request.Query);
        }

        env.End();
        foreach (var (name, value) in request.Headers)
        {
            if (name.Equals("Content-Type", StringComparison.OrdinalIgnoreCase))
            {
                env.Add("CONTENT_TYPE", value);
                continue;
            }

            if (name.Equals("Authorization", StringComparison.OrdinalIgnoreCase) || name.Equals("Content-Length", StringComparison.OrdinalIgnoreCase))
            {
                continue; // CGI never passes credentials through; the length is CONTENT_LENGTH
            }

            env.Append("HTTP_").AppendHeaderName(name).Append('=').Append(value).End();
        }
    }

    private static StringBlock AppendAddress(StringBlock env, WagiRequest request) =>
        request.RemoteIp is { } ip ? env.Append(ip) : env.Append(request.RemoteAddress);

    /// <summary>Splits CGI output into headers and body; a response without a header block is the guest's bug.</summary>
    internal static WagiOutcome Parse(ReadOnlyMemory<byte> output, int exitCode, string? stderr)
    {
        var span = output.Span;
        var (headerEnd, bodyStart) = FindHeaderEnd(span);
        if (headerEnd < 0)
        {
            return exitCode != 0
                ? Fail(500, $"app exited with code {exitCode} without a response", stderr)
                : Fail(500, "app wrote no CGI header block (headers, a blank line, then the body)", stderr);
        }

        var headers = new List<KeyValuePair<string, string>>();
        int? status = null;
        var rest = span[..headerEnd];
        while (rest.Length > 0)
        {
            var newline = rest.IndexOf((byte)'\n');
            var line = newline < 0 ? rest : rest[..newline];
            rest = newline < 0 ? [] : rest[(newline + 1)..];
            line = line.TrimEnd((byte)'\r');
            if (line.Length == 0)
            {
                continue;
            }

            var colon = line.IndexOf((byte)':');
            if (colon <= 0)
            {
                return Fail(500, $"app wrote a malformed header line '{Encoding.UTF8.GetString(line)}'", stderr);
            }

            var name = line[..colon].Trim(" \t"u8);
            var value = line[(colon + 1)..].Trim(" \t"u8);
            if (Ascii.EqualsIgnoreCase(name, "Status"u8))
            {
                var space = value.IndexOf((byte)' ');
                var code = space < 0 ? value : value[..space];
                if (code.IndexOfAnyExceptInRange((byte)'0', (byte)'9') >= 0 || !Utf8Parser.TryParse(code, out int parsed, out _) || parsed is < 100 or > 599)
                {
                    return Fail(500, $"app wrote an invalid Status header '{Encoding.UTF8.GetString(value)}'", stderr);
                }

                status = parsed;
            }
            else
            {
                headers.Add(new(HeaderName(name), Encoding.UTF8.GetString(value)));
            }
        }

        status ??= headers.Any(h => h.Key.Equals("Location", StringComparison.OrdinalIgnoreCase)) ? 302 : 200;
        return new WagiOutcome(new WagiResponse(status.Value, headers, output[bodyStart..]), null, stderr);
    }

    /// <summary>The header's name as a string: the common ones without making a new one per response.</summary>
    private static string HeaderName(ReadOnlySpan<byte> name) =>
        name.SequenceEqual("Content-Type"u8) ? "Content-Type"
        : name.SequenceEqual("Cache-Control"u8) ? "Cache-Control"
        : name.SequenceEqual("Location"u8) ? "Location"
        : Encoding.UTF8.GetString(name);

    private static (int HeaderEnd, int BodyStart) FindHeaderEnd(ReadOnlySpan<byte> span)
    {
        for (var i = 0; i < span.Length; i++)
        {
            if (span[i] != '\n')
            {
                continue;
            }

            if (i == 0)
            {
                return (0, 1);
            }

            if (i + 1 < span.Length && span[i + 1] == '\n')
            {
                return (i, i + 2);
            }

            if (i + 2 < span.Length && span[i + 1] == '\r' && span[i + 2] == '\n')
            {
                return (i, i + 3);
            }
        }

        return (-1, -1);
    }

    internal static WagiOutcome Busy(string error, string? stderr = null) =>
        new(new WagiResponse(503, [new("Content-Type", "text/plain; charset=utf-8"), new("Retry-After", "1")],
            Encoding.UTF8.GetBytes("503 service unavailable: the node is at its instance limit; retry shortly\n")), error, stderr);

    internal static WagiOutcome Fail(int status, string error, string? stderr) =>
        new(new WagiResponse(status, [new("Content-Type", "text/plain; charset=utf-8")], Encoding.UTF8.GetBytes(
            status == 504 ? "504 gateway timeout: the app did not answer in time\n" : "500 internal error: the app failed\n")), error, stderr);
}

/// <summary>An app's fixed environment, encoded for environ_get once rather than per request.</summary>
public sealed class AppEnvironment(IReadOnlyDictionary<string, string> values)
{
    internal StringBlock Block { get; } = StringBlock.OfPairs(values);
}

/// <summary>The response, plus the failure reason (for the agent log, not the client) and the guest's stderr.</summary>
public sealed record WagiOutcome(WagiResponse Response, string? Error, string? Stderr)
{
    /// <summary>The limit the request ran into, if any.</summary>
    public WagiLimit Limit { get; init; }

    /// <summary>The instance's linear memory when it finished: its peak, since memory only grows.</summary>
    public long MemoryBytes { get; init; }

    /// <summary>What the host noted about the run, for the app's log (a volume over its quota).</summary>
    public IReadOnlyList<string> Notes { get; init; } = [];
}

/// <summary>Which of an app's limits a request hit.</summary>
public enum WagiLimit
{
    None,

    /// <summary>limits.timeoutMs: answered 504.</summary>
    Timeout,

    /// <summary>limits.memoryMiB: the instance reached its memory ceiling.</summary>
    Memory,

    /// <summary>limits.maxResponseBytes.</summary>
    Response,

    /// <summary>Every instance slot on the node was in use.</summary>
    Instances,

    /// <summary>A volume's sizeLimit: a write failed with ENOSPC.</summary>
    Volume,
}
