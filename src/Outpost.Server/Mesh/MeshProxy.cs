using System.Net;
using Microsoft.AspNetCore.Http;
using Outpost.Core.Api;
using Outpost.Core.Resources;
using Outpost.Core.Store;

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
