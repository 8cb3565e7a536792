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

    /// <summary>/proxy/nodes/{node}/{path}: the node's gateway answers.</summary>
    public async Task ToNodeAsync(HttpContext context, string node, string path)
    {
        ArgumentNullException.ThrowIfNull(context);
        if (await _store.GetAsync(ResourceKind.Node.Kind, node, context.RequestAborted) is null)
        {
            await Answer(context, 404, StatusReasons.NotFound, $"nodes \"{node}\" not found");
            return;
        }

        if (!_relay.IsConnected(node))
        {
            await Answer(context, 503, StatusReasons.ServiceUnavailable, $"node '{node}' is not connected to this server: nothing can reach it until it is back");
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

    /// <summary>
    /// /proxy/services/{name}/{path}: a healthy endpoint answers; when a wire to one cannot be
    /// opened, another is tried (nothing was sent to the first).
    /// </summary>
    public async Task ToServiceAsync(HttpContext context, string name, string path)
    {
        ArgumentNullException.ThrowIfNull(context);
        var service = await _registry.GetAsync(name, context.RequestAborted);
        if (service is null)
        {
            await Answer(context, 404, StatusReasons.NotFound, $"service '{name}' not found: no app exposes it (spec.expose.service)");
            return;
        }

        var healthy = service.Healthy.OrderBy(_ => Random.Shared.Next()).ToList();
        if (healthy.Count == 0)
        {
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
        // A tunnel may idle for hours and carry any amount.
        if (context.Features.Get<Microsoft.AspNetCore.Http.Features.IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } size)
        {
            size.MaxRequestBodySize = null;
        }

        if (context.Features.Get<Microsoft.AspNetCore.Server.Kestrel.Core.Features.IHttpMinRequestBodyDataRateFeature>() is { } rate)
        {
            rate.MinDataRate = null;
        }

        await using (wire)
        {
            context.Response.StatusCode = 200;
            context.Response.ContentType = "application/octet-stream";
            await context.Response.StartAsync(context.RequestAborted);
            await context.Response.Body.FlushAsync(context.RequestAborted); // the headers go now: the client waits for them before it writes
            using var both = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted);
            var up = PumpAsync(context.Request.Body, wire, () => wire.ShutdownWriteAsync(both.Token), both.Token);
            var down = PumpAsync(wire, context.Response.Body, () => Task.CompletedTask, both.Token);
            try
            {
                var first = await Task.WhenAny(up, down);
                if (!first.IsCompletedSuccessfully)
                {
                    await both.CancelAsync();
                }

                await Task.WhenAll(up, down);
            }
            catch (Exception ex) when (ex is IOException or OperationCanceledException or Grpc.Core.RpcException or ObjectDisposedException or InvalidOperationException)
            {
                // One side went away: the tunnel is over.
            }
        }
    }

    /// <summary>Copies until the source ends (flushing each piece: a tunnel is interactive), then half-closes.</summary>
    private static async Task PumpAsync(Stream source, Stream destination, Func<Task> halfClose, CancellationToken cancellationToken)
    {
        var buffer = new byte[32 * 1024];
        int read;
        while ((read = await source.ReadAsync(buffer, cancellationToken)) > 0)
        {
            await destination.WriteAsync(buffer.AsMemory(0, read), cancellationToken);
            await destination.FlushAsync(cancellationToken);
        }

        await halfClose();
    }

    /// <summary>A healthy endpoint of the service, or an answer saying why there is none (null then).</summary>
    public async Task<MeshEndpoint?> PickEndpointAsync(HttpContext context, string name)
    {
        ArgumentNullException.ThrowIfNull(context);
        var service = await _registry.GetAsync(name, context.RequestAborted);
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

    private async Task ForwardAsync(HttpContext context, string host, string path, string prefix)
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
            if (NotForwarded.Contains(name))
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
            [var app, var node, "app"] => (node, "app/" + app),
            _ => throw new ArgumentException($"not a wire host: {host}"),
        };
    }

    private static string Reason(HttpRequestException ex) => ex.InnerException?.Message ?? ex.Message;

    private static Task Answer(HttpContext context, int code, string reason, string message) =>
        Api.ApiEndpoints.Error(new ApiStatus(code, reason, message)).ExecuteAsync(context);

    public void Dispose() => _client.Dispose();
}
