using System.Net;
using Microsoft.Extensions.Logging;
using Outpost.Wasm.Host;

namespace Outpost.Agent.Mesh;

/// <summary>
/// Apps' outbound HTTP (capability http-out, the allow-list checked before this): NAME.mesh goes
/// to mesh service NAME on a connection of its own (this node's app, a node of the site directly,
/// or the server's relay, as <see cref="MeshClient.OpenAsync"/> picks, so every request picks
/// afresh); other hosts over the node's network. An idempotent request whose endpoint could not be
/// reached, or dropped the connection before answering, is retried once on another endpoint.
/// </summary>
public sealed partial class HttpOutClient : IDisposable
{
    private static readonly HttpRequestOptionsKey<string> AvoidKey = new("outpost.mesh.avoid");
    private static readonly HttpRequestOptionsKey<string> NodeKey = new("outpost.mesh.node");

    private readonly MeshClient _mesh;
    private readonly ILogger<HttpOutClient> _logger;
    private readonly HttpClient _overMesh;
    private readonly HttpClient _outside;
    private long _sent;
    private long _retried;
    private long _failed;

    public HttpOutClient(MeshClient mesh, ILogger<HttpOutClient> logger)
    {
        _mesh = mesh;
        _logger = logger;
        _overMesh = new HttpClient(new SocketsHttpHandler
        {
            UseProxy = false,
            UseCookies = false,
            AllowAutoRedirect = false,
            // One connection per request: each picks its endpoint as the registry says now.
            PooledConnectionLifetime = TimeSpan.Zero,
            ConnectCallback = ConnectAsync,
        })
        { Timeout = Timeout.InfiniteTimeSpan };
        _outside = new HttpClient(new SocketsHttpHandler
        {
            UseCookies = false,
            AllowAutoRedirect = false,
            ConnectTimeout = TimeSpan.FromSeconds(5),
        })
        { Timeout = Timeout.InfiniteTimeSpan };
    }

    public long Sent => Interlocked.Read(ref _sent);

    public long Retried => Interlocked.Read(ref _retried);

    public long Failed => Interlocked.Read(ref _failed);

    /// <summary>Sends the request within <paramref name="timeout"/>; throws <see cref="HttpOutException"/> when no response came.</summary>
    public async Task<HttpOutResponse> SendAsync(HttpOutRequest request, TimeSpan timeout)
    {
        ArgumentNullException.ThrowIfNull(request);
        using var cts = new CancellationTokenSource(timeout);
        var mesh = request.Url.IdnHost.EndsWith(".mesh", StringComparison.OrdinalIgnoreCase);
        var idempotent = request.Method is "GET" or "HEAD" or "OPTIONS" or "PUT" or "DELETE" or "TRACE";
        string? avoid = null;
        for (var attempt = 1; ; attempt++)
        {
            using var message = ToMessage(request);
            if (avoid is not null)
            {
                message.Options.Set(AvoidKey, avoid);
            }

            try
            {
                Interlocked.Increment(ref _sent);
                using var response = await (mesh ? _overMesh : _outside).SendAsync(message, HttpCompletionOption.ResponseHeadersRead, cts.Token);
                return await ReadAsync(response, request.MaxResponseBytes, cts.Token);
            }
            catch (HttpRequestException ex) when (mesh && idempotent && attempt == 1 && !cts.IsCancellationRequested)
            {
                // The endpoint was unreachable or went away before answering: once more, elsewhere.
                Interlocked.Increment(ref _retried);
                avoid = message.Options.TryGetValue(NodeKey, out var node) && node.Length > 0 ? node : null;
                var reason = Reason(ex);
                LogRetrying(_logger, request.Method, request.Url.IdnHost, avoid ?? "(picked by the server)", reason);
            }
            catch (HttpRequestException ex)
            {
                Interlocked.Increment(ref _failed);
                throw new HttpOutException(Reason(ex));
            }
            catch (OperationCanceledException) when (cts.IsCancellationRequested)
            {
                Interlocked.Increment(ref _failed);
                throw new HttpOutException($"no response within {timeout.TotalMilliseconds:F0} ms (what was left of the app's timeout)");
            }
        }
    }

    private static HttpRequestMessage ToMessage(HttpOutRequest request)
    {
        var message = new HttpRequestMessage(new HttpMethod(request.Method), request.Url) { Version = HttpVersion.Version11 };
        if (request.Body.Length > 0 || request.Method is "POST" or "PUT" or "PATCH")
        {
            message.Content = new ByteArrayContent(request.Body);
        }

        foreach (var (name, value) in request.Headers)
        {
            if (!message.Headers.TryAddWithoutValidation(name, value))
            {
                message.Content ??= new ByteArrayContent([]);
                message.Content.Headers.TryAddWithoutValidation(name, value);
            }
        }

        return message;
    }

    private static async Task<HttpOutResponse> ReadAsync(HttpResponseMessage response, int maxBytes, CancellationToken cancellationToken)
    {
        if (response.Content.Headers.ContentLength > maxBytes)
        {
            throw new HttpOutException($"the response body ({response.Content.Headers.ContentLength} bytes) is larger than the app may take ({maxBytes}, its maxResponseBytes)");
        }

        await using var stream = await response.Content.ReadAsStreamAsync(cancellationToken);
        var body = new MemoryStream();
        var buffer = new byte[16 * 1024];
        int read;
        while ((read = await stream.ReadAsync(buffer, cancellationToken)) > 0)
        {
            if (body.Length + read > maxBytes)
            {
                throw new HttpOutException($"the response body is larger than the app may take ({maxBytes} bytes, its maxResponseBytes)");
            }

            body.Write(buffer, 0, read);
        }

        var headers = response.Headers.Concat(response.Content.Headers).SelectMany(h => h.Value.Select(v => new KeyValuePair<string, string>(h.Key, v))).ToList();
        return new HttpOutResponse((int)response.StatusCode, headers, body.ToArray());
    }

    private async ValueTask<Stream> ConnectAsync(SocketsHttpConnectionContext context, CancellationToken cancellationToken)
    {
        var service = context.DnsEndPoint.Host[..^".mesh".Length].ToLowerInvariant();
        var options = context.InitialRequestMessage.Options;
        options.TryGetValue(AvoidKey, out var avoid);
        MeshConnection connection;
        try
        {
            connection = await _mesh.OpenAsync(service, cancellationToken, avoid);
        }
        catch (MeshUnavailableException ex)
        {
            throw new HttpRequestException(ex.Message, ex);
        }

        options.Set(NodeKey, connection.Node);
        return connection.Stream; // it owns the connection: the handler's dispose ends it
    }

    /// <summary>The innermost reason, which says what happened (not "An error occurred while sending the request").</summary>
    private static string Reason(Exception ex)
    {
        var reasons = new List<string>();
        for (Exception? e = ex; e is not null; e = e.InnerException)
        {
            reasons.Add(e.Message);
        }

        return ex.InnerException is MeshUnavailableException mesh ? mesh.Message : string.Join(": ", reasons.Distinct());
    }

    public void Dispose()
    {
        _overMesh.Dispose();
        _outside.Dispose();
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "http-out {Method} {Host}: the endpoint failed ({Reason}); retrying once, not on {Avoid}")]
    private static partial void LogRetrying(ILogger logger, string method, string host, string avoid, string reason);
}
