using System.Net;
using Microsoft.AspNetCore.Http;
using Outpost.Core.Api;
using Outpost.Core.Resources;
using Outpost.Core.Store;
using Outpost.Protocol;

namespace Outpost.Server.Mesh;

/// <summary>
/// The cloud gateway into nodes behind NAT: <c>/proxy/nodes/{node}/...</c> reaches that node's
/// gateway and <c>/proxy/services/{name}/...</c> a healthy endpoint of the service, both over
/// vWires on the nodes' own outbound connections. HTTP/1.1 rides each wire (an HttpClient whose
/// connections are wires), so keep-alive reuses a wire for the next request; the caller's API
/// token stays here and never reaches the node.
/// </summary>
public sealed class MeshProxy : IDisposable
{
    private const string WireHost = ".wire.outpost";

    private static readonly HashSet<string> NotForwarded = new(StringComparer.OrdinalIgnoreCase)
    {
        "Connection", "Keep-Alive", "Transfer-Encoding", "Upgrade", "Proxy-Connection", "TE", "Trailer", "Host", "Authorization",
    };

    private readonly HttpMessageInvoker _client;
    private readonly IControlPlaneStore _store;
    private readonly MeshRegistry _registry;
    private readonly WireRelay _relay;

    public MeshProxy(WireRelay relay, MeshRegistry registry, IControlPlaneStore store)
    {
        _relay = relay ?? throw new ArgumentNullException(nameof(relay));
        _registry = registry;
        _store = store;
        var handler = new SocketsHttpHandler
        {
            UseProxy = false,
            AllowAutoRedirect = false,
            UseCookies = false,
            AutomaticDecompression = DecompressionMethods.None,
            PooledConnectionIdleTimeout = TimeSpan.FromSeconds(30),
            ConnectTimeout = WireRelay.AcceptTimeout + TimeSpan.FromSeconds(5),
            // A connection is a wire: HOST names the node and what on it ("gateway" or "app/NAME").
            ConnectCallback = async (context, ct) =>
            {
                var (node, target) = Parse(context.DnsEndPoint.Host);
                return await relay.OpenAsync(node, target, ct);
            },
        };
        _client = new HttpMessageInvoker(handler);
    }

    /// <summary>The connection item that marks a connection of the public ingress listener.</summary>
    public const string IngressItem = "outpost.ingress";

    private readonly System.Collections.Concurrent.ConcurrentDictionary<(string Service, string Via), long[]> _served = new();
    private long _ingressRequests;
    private long _ingressUnrouted;

    public long IngressRequests => Interlocked.Read(ref _ingressRequests);

    public long IngressUnrouted => Interlocked.Read(ref _ingressUnrouted);

    /// <summary>Requests forwarded to each service, by way in (proxy or ingress), and how many found no endpoint.</summary>
    public IReadOnlyList<(string Service, string Via, long Requests, long Unavailable)> Served =>
        [.. _served.ToArray().OrderBy(p => p.Key.Service, StringComparer.Ordinal).ThenBy(p => p.Key.Via, StringComparer.Ordinal)
            .Select(p => (p.Key.Service, p.Key.Via, Interlocked.Read(ref p.Value[0]), Interlocked.Read(ref p.Value[1])))];

    private void Count(string service, string via, bool reached)
    {
        var counters = _served.GetOrAdd((service, via), _ => new long[2]);
        Interlocked.Increment(ref counters[reached ? 0 : 1]);
    }

    /// <summary>True for a request that came in on the ingress listener.</summary>
    public static bool IsIngress(HttpContext context) =>
        context?.Features.Get<Microsoft.AspNetCore.Connections.Features.IConnectionItemsFeature>()?.Items.ContainsKey(IngressItem) == true;

    /// <summary>
    /// Public ingress: the service whose ingress path is the longest prefix of the request's path
    /// answers, from a healthy endpoint, with that prefix taken off (and in X-Forwarded-Prefix), as
    /// /proxy/services does; no token, and nothing else is reachable on this listener.
    /// </summary>
    public async Task IngressAsync(HttpContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        Interlocked.Increment(ref _ingressRequests);
        var path = context.Request.Path.Value is { Length: > 0 } p ? p : "/";
        var services = await _registry.ListRecentAsync(context.RequestAborted);
        var match = services.Where(s => s.Ingress is { } prefix && (prefix == "/" || path == prefix || path.StartsWith(prefix + "/", StringComparison.Ordinal)))
            .OrderByDescending(s => s.Ingress!.Length).FirstOrDefault();
        if (match is null)
        {
            Interlocked.Increment(ref _ingressUnrouted);
            await PlainAsync(context, 404, $"404 not found: no service is published at {path}\n");
            return;
        }

        var rest = match.Ingress == "/" ? path : path[match.Ingress!.Length..];
        var healthy = match.Healthy.OrderBy(_ => Random.Shared.Next()).ToList();
        foreach (var endpoint in healthy.Take(2))
        {
            try
            {
                await ForwardAsync(context, $"{endpoint.App}.{endpoint.Node}.app{WireHost}", rest, match.Ingress == "/" ? "" : match.Ingress, publicRequest: true);
                Count(match.Name, "ingress", reached: true);
                return;
            }
            catch (HttpRequestException ex) when (ex.InnerException is WireUnavailableException && !context.Response.HasStarted)
            {
                // Not reachable after all: the next one.
            }
            catch (HttpRequestException) when (!context.Response.HasStarted)
            {
                await PlainAsync(context, 502, $"502 bad gateway: service {match.Name} did not answer\n");
                return;
            }
        }

        Count(match.Name, "ingress", reached: false);
        context.Response.Headers.RetryAfter = "1";
        await PlainAsync(context, 503, $"503 service unavailable: service {match.Name} has no reachable endpoint\n");
    }

    /// <summary>Public answers are plain text: nothing about the fleet's API leaks out on the ingress listener.</summary>
    private static Task PlainAsync(HttpContext context, int status, string text)
    {
        context.Response.StatusCode = status;
        context.Response.ContentType = "text/plain; charset=utf-8";
        return context.Response.WriteAsync(text, context.RequestAborted);
    }

    /// <summary>/proxy/nodes/{node}/{path}: the node's gateway answers.</summary>
    public async Task ToNodeAsync(HttpContext context, string node, string path)
    {
        ArgumentNullException.ThrowIfNull(context);
        if (!await ReachableAsync(context, node))
        {
            return;
        }

        context.Items[Hosting.OutpostServer.AuditDetailKey] = $"proxied to node {node}";
        try
        {
            await ForwardAsync(context, $"{node}.gateway{WireHost}", path, $"/proxy/nodes/{node}");
        }
        catch (HttpRequestException ex)
        {
            await Answer(context, 502, StatusReasons.BadGateway, $"node '{node}' did not answer: {Reason(ex)}");
        }
    }

    /// <summary>True when the node exists and is connected here; otherwise the caller has been answered why not.</summary>
    private async Task<bool> ReachableAsync(HttpContext context, string node)
    {
        if (await _store.GetAsync(ResourceKind.Node.Kind, node, context.RequestAborted) is null)
        {
            await Answer(context, 404, StatusReasons.NotFound, $"nodes \"{node}\" not found");
            return false;
        }

        if (!_relay.IsConnected(node))
        {
            await Answer(context, 503, StatusReasons.ServiceUnavailable, $"node '{node}' is not connected to this server: nothing can reach it until it is back");
            return false;
        }

        return true;
    }

    /// <summary>/proxy/exec/{node}/{app}: a command run in an app's container on a node (the body says which), over a wire of its own.</summary>
    public async Task ExecAsync(HttpContext context, string node, string app)
    {
        ArgumentNullException.ThrowIfNull(context);
        if (!await ReachableAsync(context, node))
        {
            return;
        }

        context.Items[Hosting.OutpostServer.AuditDetailKey] = $"exec in app {app} on node {node}";
        try
        {
            await ForwardAsync(context, $"{node}.exec{WireHost}", app, $"/proxy/exec/{node}");
        }
        catch (HttpRequestException ex)
        {
            await Answer(context, 502, StatusReasons.BadGateway, $"node '{node}' did not answer: {Reason(ex)}");
        }
    }

    /// <summary>
    /// /proxy/services/{name}/{path}: a healthy endpoint answers; when a wire to one cannot be
    /// opened, another is tried (nothing was sent to the first).
    /// </summary>
    public async Task ToServiceAsync(HttpContext context, string name, string path)
    {
        ArgumentNullException.ThrowIfNull(context);
        var service = await _registry.GetRecentAsync(name, context.RequestAborted);
        if (service is null)
        {
            await Answer(context, 404, StatusReasons.NotFound, $"service '{name}' not found: no app exposes it (spec.expose.service)");
            return;
        }

        var healthy = service.Healthy.OrderBy(_ => Random.Shared.Next()).ToList();
        if (healthy.Count == 0)
        {
            Count(name, "proxy", reached: false);
            await Answer(context, 503, StatusReasons.ServiceUnavailable,
                $"service '{name}' has no healthy endpoint ({service.Endpoints.Count} known: {string.Join(", ", service.Endpoints.Select(e => $"{e.App} on {e.Node} {e.AppState}, node {e.NodeState}"))})");
            return;
        }

        var failures = new List<string>();
        foreach (var endpoint in healthy.Take(2))
        {
            context.Items[Hosting.OutpostServer.AuditDetailKey] = $"proxied to service {name}: app {endpoint.App} on node {endpoint.Node}";
            try
            {
                context.Response.Headers["Outpost-Endpoint"] = $"{endpoint.Node}/{endpoint.App}";
                await ForwardAsync(context, $"{endpoint.App}.{endpoint.Node}.app{WireHost}", path, $"/proxy/services/{name}");
                Count(name, "proxy", reached: true);
                return;
            }
            catch (HttpRequestException ex) when (ex.InnerException is WireUnavailableException && !context.Response.HasStarted)
            {
                failures.Add($"{endpoint.Node}: {ex.InnerException.Message}");
            }
            catch (HttpRequestException ex) when (!context.Response.HasStarted)
            {
                await Answer(context, 502, StatusReasons.BadGateway, $"app {endpoint.App} on node {endpoint.Node} did not answer: {Reason(ex)}");
                return;
            }
        }

        Count(name, "proxy", reached: false);
        context.Response.Headers.Remove("Outpost-Endpoint");
        await Answer(context, 503, StatusReasons.ServiceUnavailable, $"service '{name}': no endpoint could be reached ({string.Join("; ", failures)})");
    }

    /// <summary>
    /// /proxy/tunnel/...: a raw byte stream for `outpost port-forward`, as one HTTP/2 request whose
    /// body carries the client's bytes (after a 0x01 marker byte) and whose response carries the
    /// target's, both open at once.
    /// </summary>
    public async Task TunnelAsync(HttpContext context, string node, string target, string what)
    {
        ArgumentNullException.ThrowIfNull(context);
        if (!HttpMethods.IsPost(context.Request.Method) || !HttpProtocol.IsHttp2(context.Request.Protocol))
        {
            await Answer(context, 400, StatusReasons.BadRequest, "a tunnel is a POST over HTTP/2 whose body and response stay open: use `outpost port-forward`");
            return;
        }

        // A tunnel may idle for hours and carry any amount.
        if (context.Features.Get<Microsoft.AspNetCore.Http.Features.IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } size)
        {
            size.MaxRequestBodySize = null;
        }

        if (context.Features.Get<Microsoft.AspNetCore.Server.Kestrel.Core.Features.IHttpMinRequestBodyDataRateFeature>() is { } rate)
        {
            rate.MinDataRate = null;
        }

        // The client opens with one marker byte: HTTP/2 sends its request headers only with body bytes.
        var marker = new byte[1];
        if (await context.Request.Body.ReadAtLeastAsync(marker, 1, throwOnEndOfStream: false, context.RequestAborted) != 1 || marker[0] != 0x01)
        {
            await Answer(context, 400, StatusReasons.BadRequest, "not a tunnel: the body must open with the byte 0x01; use `outpost port-forward`");
            return;
        }

        WireStream wire;
        try
        {
            wire = await _relay.OpenAsync(node, target, context.RequestAborted);
        }
        catch (WireUnavailableException ex)
        {
            await Answer(context, 503, StatusReasons.ServiceUnavailable, ex.Message);
            return;
        }

        context.Items[Hosting.OutpostServer.AuditDetailKey] = $"tunnel to {what}";
        await using (wire)
        {
            context.Response.StatusCode = 200;
            context.Response.ContentType = "application/octet-stream";
            await context.Response.StartAsync(context.RequestAborted);
            await context.Response.Body.FlushAsync(context.RequestAborted); // the headers go now: the client waits for them before it writes
            try
            {
                await Core.Net.Pump.BothAsync(
                    token => Core.Net.Pump.CopyAsync(context.Request.Body, wire, () => wire.ShutdownWriteAsync(token), flushEach: false, token),
                    token => Core.Net.Pump.CopyAsync(wire, context.Response.Body, () => Task.CompletedTask, flushEach: true, token),
                    context.RequestAborted);
            }
            catch (Exception ex) when (ex is IOException or OperationCanceledException or Grpc.Core.RpcException or ObjectDisposedException or InvalidOperationException)
            {
                // One side went away: the tunnel is over.
            }
        }
    }

    /// <summary>A healthy endpoint of the service, or an answer saying why there is none (null then).</summary>
    public async Task<MeshEndpoint?> PickEndpointAsync(HttpContext context, string name)
    {
        ArgumentNullException.ThrowIfNull(context);
        var service = await _registry.GetRecentAsync(name, context.RequestAborted);
        if (service is null)
        {
            await Answer(context, 404, StatusReasons.NotFound, $"service '{name}' not found: no app exposes it (spec.expose.service)");
            return null;
        }

        var healthy = service.Healthy.ToList();
        if (healthy.Count == 0)
        {
            await Answer(context, 503, StatusReasons.ServiceUnavailable, $"service '{name}' has no healthy endpoint ({service.Endpoints.Count} known)");
            return null;
        }

        return healthy[Random.Shared.Next(healthy.Count)];
    }

    // publicRequest (ingress): the caller's Authorization header is theirs, for the app; through
    // /proxy it is the API token and stays here.
    private async Task ForwardAsync(HttpContext context, string host, string path, string prefix, bool publicRequest = false)
    {
        var incoming = context.Request;
        var uri = new Uri($"http://{host}/{path.TrimStart('/')}{incoming.QueryString}");
        using var request = new HttpRequestMessage(new HttpMethod(incoming.Method), uri) { Version = HttpVersion.Version11, VersionPolicy = HttpVersionPolicy.RequestVersionExact };
        var hasBody = incoming.ContentLength > 0 || incoming.Headers.TransferEncoding.Count > 0;
        if (hasBody)
        {
            request.Content = new StreamContent(incoming.Body);
        }

        foreach (var (name, values) in incoming.Headers)
        {
            if (NotForwarded.Contains(name) && !(publicRequest && name.Equals("Authorization", StringComparison.OrdinalIgnoreCase)))
            {
                continue;
            }

            if (!request.Headers.TryAddWithoutValidation(name, (IEnumerable<string?>)values) && request.Content is not null)
            {
                request.Content.Headers.TryAddWithoutValidation(name, (IEnumerable<string?>)values);
            }
        }

        request.Headers.TryAddWithoutValidation("X-Forwarded-For", context.Connection.RemoteIpAddress?.ToString());
        request.Headers.TryAddWithoutValidation("X-Forwarded-Proto", incoming.Scheme);
        request.Headers.TryAddWithoutValidation("X-Forwarded-Host", incoming.Host.Value);
        request.Headers.TryAddWithoutValidation("X-Forwarded-Prefix", prefix);

        using var response = await _client.SendAsync(request, context.RequestAborted);
        context.Response.StatusCode = (int)response.StatusCode;
        foreach (var (name, values) in response.Headers.Concat(response.Content.Headers))
        {
            if (!NotForwarded.Contains(name))
            {
                context.Response.Headers[name] = values.ToArray();
            }
        }

        await using var body = await response.Content.ReadAsStreamAsync(context.RequestAborted);
        await body.CopyToAsync(context.Response.Body, context.RequestAborted);
    }

    /// <summary>NODE.gateway.wire.outpost, or APP.NODE.app.wire.outpost.</summary>
    private static (string Node, string Target) Parse(string host)
    {
        var parts = host[..^WireHost.Length].Split('.');
        return parts switch
        {
            [var node, "gateway"] => (node, "gateway"),
            [var node, "exec"] => (node, "exec"),
            [var app, var node, "app"] => (node, "app/" + app),
            _ => throw new ArgumentException($"not a wire host: {host}"),
        };
    }

    private static string Reason(HttpRequestException ex) => ex.InnerException?.Message ?? ex.Message;

    private static Task Answer(HttpContext context, int code, string reason, string message) =>
        Api.ApiEndpoints.Error(new ApiStatus(code, reason, message)).ExecuteAsync(context);

    public void Dispose() => _client.Dispose();
}
