using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Outpost.Core.Resources;
using Outpost.Wasm.Components;
using Outpost.Wasm.Hosting;
using Outpost.Wasm.Wagi;

namespace Outpost.Agent.Apps;

/// <summary>
/// A Wasm revision: its compiled core module (a fresh instance per request, WAGI over in-memory
/// stdio) or component (a fresh instance per request through wasi:http/incoming-handler).
/// </summary>
public sealed partial class WasmAppInstance : IAppInstance
{
    private readonly WasmModule? _module;
    private readonly WasmComponent? _component;
    private readonly ComponentRunner? _components;
    private readonly WasmHost _host;

    public WasmAppInstance(WasmModule module, WasmHost host)
    {
        _module = module;
        _host = host;
    }

    public WasmAppInstance(WasmComponent component, WasmHost host)
    {
        _component = component;
        _components = new ComponentRunner(host.Components);
        _host = host;
    }

    private static readonly HashSet<string> HopByHop = new(StringComparer.OrdinalIgnoreCase)
    {
        "Connection", "Keep-Alive", "Transfer-Encoding", "Upgrade", "Content-Length", "Proxy-Connection", "TE", "Trailer",
    };

    /// <summary>The core module, or null for a component.</summary>
    internal WasmModule? Module => _module;

    /// <summary>The component, or null for a core module.</summary>
    internal WasmComponent? Component => _component;

    public string Source => (_module?.FromCache ?? _component!.FromCache) ? "precompiled cache" : "compiled";

    public async Task<ServeOutcome> ServeAsync(HttpContext context, AppRequest request)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(request);
        var (app, route, path, services) = request;
        var body = await ReadBodyAsync(context, services.MaxRequestBodyBytes);
        if (body is null)
        {
            app.Counters.RecordLimit(AppLimitKind.Body);
            await WriteTextAsync(context, 413, $"413 request body larger than {services.MaxRequestBodyBytes} bytes\n");
            return new ServeOutcome(413) { Counted = false };
        }

        var wagi = ToWagiRequest(context, route, path, body.Value);
        WagiOutcome outcome;
        var run = services.Threads.Enter();
        try
        {
            outcome = Handle(wagi, app, services.Runner);
        }
        finally
        {
            services.Threads.Exit(run);
        }

        if (outcome.Stderr is { } stderr)
        {
            // The app's stderr is its log: one line each, error level when the request failed.
            foreach (var line in stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
            {
                services.Logs.Write(outcome.Error is null ? "info" : "error", app.Name, app.Version.Generation, line);
            }
        }

        if (outcome.Error is not null)
        {
            services.Logs.Write("error", app.Name, app.Version.Generation, $"{context.Request.Method} {path} answered {outcome.Response.Status}: {outcome.Error}");
            LogAppFailed(services.Logger, app.Name, path, outcome.Response.Status, outcome.Error, outcome.Stderr ?? "");
        }

        foreach (var note in outcome.Notes)
        {
            services.Logs.Write("warn", app.Name, app.Version.Generation, $"{context.Request.Method} {path}: {note}");
        }

        await WriteAsync(context, outcome.Response);
        return new ServeOutcome(outcome.Response.Status, outcome.Limit, outcome.MemoryBytes);
    }

    /// <summary>Runs the probe in a fresh instance, as a request would be.</summary>
    public Task<string?> ProbeAsync(LoadedApp app, ReadinessProbe probe, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(app);
        ArgumentNullException.ThrowIfNull(probe);
        var request = new WagiRequest { Method = "GET", Path = probe.Path, Route = app.Spec.Http!.Route, RemoteAddress = "127.0.0.1" };
        var outcome = Handle(request, app, new WagiRunner(_host));
        return Task.FromResult(outcome.Response.Status == probe.ExpectStatus
            ? null
            : $"GET {probe.Path} answered {outcome.Response.Status} (expected {probe.ExpectStatus}){(outcome.Error is null ? "" : ": " + outcome.Error)}");
    }

    private WagiOutcome Handle(WagiRequest request, LoadedApp app, WagiRunner runner) =>
        _component is not null
            ? _components!.Handle(_component, request, app.Spec.Limits, app.Grant, app.EnvPairs)
            : runner.Handle(_module!, request, app.EncodedEnv, app.Spec.Limits, app.Grant, app.Mounts, app.Models);

    /// <summary>Runs the revision for a timer tick or topic message: its module's _start, or its command component's run.</summary>
    internal Outpost.Wasm.Events.EventOutcome RunEvent(LoadedApp app, Outpost.Wasm.Events.EventRunner runner, IReadOnlyList<KeyValuePair<string, string>> eventEnv, ReadOnlyMemory<byte> payload) =>
        _component is not null
            ? _components!.Run(_component, [.. app.EnvPairs, .. eventEnv], payload, app.Spec.Limits, app.Grant)
            : runner.Run(_module!, app.EncodedEnv, app.Spec.Limits, app.Grant, eventEnv, payload, app.Mounts, app.Models);

    public void Dispose()
    {
        _module?.Dispose();
        _component?.Dispose();
    }

    /// <summary>A WAGI request for what Kestrel received: <paramref name="path"/> as the app sees it under <paramref name="route"/>.</summary>
    public static WagiRequest ToWagiRequest(HttpContext context, string route, string path, ReadOnlyMemory<byte> body)
    {
        ArgumentNullException.ThrowIfNull(context);
        return new WagiRequest
        {
            Method = context.Request.Method,
            Path = path,
            Query = context.Request.QueryString.HasValue ? context.Request.QueryString.Value![1..] : "",
            Route = route,
            Headers = CopyHeaders(context.Request.Headers),
            Body = body,
            Host = context.Request.Host.Host,
            Port = context.Request.Host.Port ?? context.Connection.LocalPort,
            RemoteIp = context.Connection.RemoteIpAddress,
            Scheme = context.Request.Scheme,
        };
    }

    /// <summary>Writes a guest's response, leaving out hop-by-hop headers.</summary>
    public static async Task WriteAsync(HttpContext context, WagiResponse outcome)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(outcome);
        var response = context.Response;
        response.StatusCode = outcome.Status;
        foreach (var (name, value) in outcome.Headers)
        {
            if (!HopByHop.Contains(name))
            {
                response.Headers.Append(name, value);
            }
        }

        response.ContentLength = outcome.Body.Length;
        await response.Body.WriteAsync(outcome.Body, context.RequestAborted);
    }

    internal static List<KeyValuePair<string, string>> CopyHeaders(IHeaderDictionary headers)
    {
        var list = new List<KeyValuePair<string, string>>(headers.Count);
        foreach (var header in headers)
        {
            list.Add(new(header.Key, header.Value.ToString()));
        }

        return list;
    }

    /// <summary>The request's body, or null when it is over <paramref name="limit"/> bytes.</summary>
    public static async Task<ReadOnlyMemory<byte>?> ReadBodyAsync(HttpContext context, int limit)
    {
        if (context.Request.ContentLength is 0 || (context.Request.ContentLength is null && context.Request.Headers.TransferEncoding.Count == 0))
        {
            return ReadOnlyMemory<byte>.Empty;
        }

        if (context.Request.ContentLength > limit)
        {
            return null;
        }

        using var buffer = new MemoryStream();
        var chunk = new byte[16 * 1024];
        int n;
        while ((n = await context.Request.Body.ReadAsync(chunk, context.RequestAborted)) > 0)
        {
            if (buffer.Length + n > limit)
            {
                return null;
            }

            buffer.Write(chunk, 0, n);
        }

        return buffer.ToArray();
    }

    public static Task WriteTextAsync(HttpContext context, int status, string text)
    {
        context.Response.StatusCode = status;
        context.Response.ContentType = "text/plain; charset=utf-8";
        return context.Response.WriteAsync(text, System.Text.Encoding.UTF8, context.RequestAborted);
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "App '{App}' failed {Path} with {Status}: {Error} {Stderr}")]
    private static partial void LogAppFailed(ILogger logger, string app, string path, int status, string error, string stderr);
}
