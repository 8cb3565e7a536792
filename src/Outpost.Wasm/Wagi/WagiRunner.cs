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
    private static readonly Dictionary<string, string> NoAppEnv = [];

    /// <summary>Runs one request in a fresh instance. Guest failures become 5xx responses, never exceptions.</summary>
    public WagiOutcome Handle(WasmModule module, WagiRequest request, IReadOnlyDictionary<string, string> appEnv, AppLimits limits) =>
        Handle(module, request, new AppEnvironment(appEnv), limits);

    /// <summary>As above, with the app's fixed environment encoded once (the gateway's hot path).</summary>
    public WagiOutcome Handle(WasmModule module, WagiRequest request, AppEnvironment appEnv, AppLimits limits, Host.HostGrant? grant = null, WasiMounts? mounts = null, IReadOnlyDictionary<string, Nn.NnModel>? models = null)
    {
        ArgumentNullException.ThrowIfNull(request);
        ArgumentNullException.ThrowIfNull(limits);
        ArgumentNullException.ThrowIfNull(appEnv);
        var env = BuildEnvironment(request, NoAppEnv); // the app's own env is pre-encoded in appEnv
        var context = new WasiContext([request.Route], appEnv.Encoded, env, request.Body, limits.MaxResponseBytes, 64 * 1024) { Grant = grant, Mounts = mounts, Models = models };
        var result = host.Run(module, context, limits);
        var stderr = context.CapturedStderr.Length > 0 ? context.CapturedStderr.ToText() : null;
        var outcome = result.Outcome switch
        {
            RunOutcome.TimedOut => Fail(504, result.Error!, stderr) with { Limit = WagiLimit.Timeout },
            RunOutcome.Trapped => Fail(500, $"trap: {result.Error}", stderr),
            RunOutcome.OutputTooLarge => Fail(500, result.Error!, stderr) with { Limit = WagiLimit.Response },
            RunOutcome.Busy => Busy(result.Error!) with { Limit = WagiLimit.Instances },
            _ => Parse(context.CapturedStdout.WrittenMemory, result.ExitCode, stderr),
        };
        // Linear memory grows in 64 KiB pages: within a page of the limit, a further grow was refused.
        var memoryLimit = (long)limits.MemoryMiB * 1024 * 1024;
        return outcome with
        {
            MemoryBytes = result.MemoryBytes,
            Notes = context.Notes,
            Limit = outcome.Limit != WagiLimit.None ? outcome.Limit
                : result.MemoryBytes > memoryLimit - 65536 ? WagiLimit.Memory
                : context.VolumeFull ? WagiLimit.Volume
                : WagiLimit.None,
        };
    }

    internal static List<KeyValuePair<string, string>> BuildEnvironment(WagiRequest request, IReadOnlyDictionary<string, string> appEnv)
    {
        var pathInfo = request.Route == "/" ? request.Path : request.Path[Math.Min(request.Route.Length, request.Path.Length)..];
        var env = new List<KeyValuePair<string, string>>(appEnv)
        {
            new("GATEWAY_INTERFACE", "CGI/1.1"),
            new("SERVER_SOFTWARE", "Outpost"),
            new("SERVER_PROTOCOL", "HTTP/1.1"),
            new("SERVER_NAME", request.Host),
            new("SERVER_PORT", request.Port.ToString(CultureInfo.InvariantCulture)),
            new("REQUEST_METHOD", request.Method),
            new("SCRIPT_NAME", request.Route == "/" ? "" : request.Route),
            new("PATH_INFO", pathInfo),
            new("PATH_TRANSLATED", pathInfo),
            new("QUERY_STRING", request.Query),
            new("REMOTE_ADDR", request.RemoteAddress),
            new("REMOTE_HOST", request.RemoteAddress),
            new("CONTENT_LENGTH", request.Body.Length.ToString(CultureInfo.InvariantCulture)),
            new("X_MATCHED_ROUTE", request.Route),
            new("X_RAW_PATH_INFO", pathInfo),
            new("X_FULL_URL", $"{request.Scheme}://{request.Host}:{request.Port}{request.Path}{(request.Query.Length > 0 ? "?" + request.Query : "")}"),
        };
        foreach (var (name, value) in request.Headers)
        {
            if (name.Equals("Content-Type", StringComparison.OrdinalIgnoreCase))
            {
                env.Add(new("CONTENT_TYPE", value));
                continue;
            }

            if (name.Equals("Authorization", StringComparison.OrdinalIgnoreCase) || name.Equals("Content-Length", StringComparison.OrdinalIgnoreCase))
            {
                continue; // CGI never passes credentials through; the length is CONTENT_LENGTH
            }

            env.Add(new("HTTP_" + name.ToUpperInvariant().Replace('-', '_'), value));
        }

        return env;
    }

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
        foreach (var line in Encoding.UTF8.GetString(span[..headerEnd]).Split('\n'))
        {
            var trimmed = line.TrimEnd('\r');
            if (trimmed.Length == 0)
            {
                continue;
            }

            var colon = trimmed.IndexOf(':', StringComparison.Ordinal);
            if (colon <= 0)
            {
                return Fail(500, $"app wrote a malformed header line '{trimmed}'", stderr);
            }

            var name = trimmed[..colon].Trim();
            var value = trimmed[(colon + 1)..].Trim();
            if (name.Equals("Status", StringComparison.OrdinalIgnoreCase))
            {
                var code = value.Split(' ', 2)[0];
                if (!int.TryParse(code, NumberStyles.None, CultureInfo.InvariantCulture, out var parsed) || parsed is < 100 or > 599)
                {
                    return Fail(500, $"app wrote an invalid Status header '{value}'", stderr);
                }

                status = parsed;
            }
            else
            {
                headers.Add(new(name, value));
            }
        }

        status ??= headers.Any(h => h.Key.Equals("Location", StringComparison.OrdinalIgnoreCase)) ? 302 : 200;
        return new WagiOutcome(new WagiResponse(status.Value, headers, output[bodyStart..]), null, stderr);
    }

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
    internal IReadOnlyList<byte[]> Encoded { get; } = [.. values.Select(p => WasiContext.Encode(p.Key, p.Value))];
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
