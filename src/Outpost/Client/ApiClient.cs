using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Outpost.Client;

/// <summary>An API error, carrying the server's Status message and reason.</summary>
internal sealed class ApiException(int code, string reason, string message, JsonObject? status = null) : Exception(message)
{
    public int Code { get; } = code;

    public string Reason { get; } = reason;

    public JsonObject? Status { get; } = status;
}

/// <summary>A thin client over the REST API, the same one kubectl-style tools use.</summary>
internal sealed class ApiClient : IDisposable
{
    private readonly HttpClient _http;
    private readonly bool _pinned;
    private string? _rejection;

    /// <summary>A client of one server; a TLS server is verified against <paramref name="certificateAuthorityPem"/> (the system store when null).</summary>
    public ApiClient(string server, string token, string? certificateAuthorityPem = null)
    {
        var uri = new Uri(server.TrimEnd('/') + "/");
        _pinned = certificateAuthorityPem is not null;
        // As kubectl's dialer: 30 s covers the TCP connect and the TLS handshake, which a busy
        // server or a slow edge uplink can stretch well past a few seconds. A server that is down
        // refuses at once; only a blackholed address waits this out.
        var handler = new SocketsHttpHandler { ConnectTimeout = TimeSpan.FromSeconds(30) };
        if (certificateAuthorityPem is not null)
        {
            var bundle = Core.Security.TrustBundle.FromPem(certificateAuthorityPem);
            handler.SslOptions = new System.Net.Security.SslClientAuthenticationOptions
            {
                RemoteCertificateValidationCallback = bundle.ServerValidator(reason => _rejection = reason),
            };
        }

        _http = new HttpClient(handler)
        {
            BaseAddress = uri,
            Timeout = TimeSpan.FromSeconds(100),
            // Cleartext servers speak HTTP/2 only (h2c, prior knowledge); TLS negotiates.
            DefaultRequestVersion = HttpVersion.Version20,
            DefaultVersionPolicy = uri.Scheme == "http" ? HttpVersionPolicy.RequestVersionExact : HttpVersionPolicy.RequestVersionOrLower,
        };
        _http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token);
        Server = server;
    }

    public string Server { get; }

    /// <summary>Why a request never got an answer, in words that say what to type instead.</summary>
    private string Explain(HttpRequestException ex)
    {
        if (_rejection is not null)
        {
            return $"refused its certificate: {_rejection}";
        }

        var inner = ex.InnerException?.Message ?? ex.Message;
        if (ex.InnerException is System.Security.Authentication.AuthenticationException)
        {
            return _pinned
                ? $"the TLS handshake failed ({inner})"
                : $"its certificate is not trusted here ({inner}): use the config.yaml the server wrote, which carries the fleet's CA "
                    + "(--config, OUTPOST_CONFIG or ~/.outpost/config.yaml, for the same server URL), or set OUTPOST_CA_FILE to the server's DATA/tls/ca.crt";
        }

        if (Server.StartsWith("http://", StringComparison.OrdinalIgnoreCase) && ex.HttpRequestError is not (HttpRequestError.ConnectionError or HttpRequestError.NameResolutionError))
        {
            return $"it did not answer HTTP/2 in cleartext ({inner}); an Outpost server speaks TLS unless started with --insecure-http: use https://{Server["http://".Length..]}";
        }

        return inner;
    }

    public Task<JsonObject> GetAsync(string path, CancellationToken ct) => SendAsync(HttpMethod.Get, path, null, null, ct);

    public Task<JsonObject> PostAsync(string path, JsonNode body, CancellationToken ct) => SendAsync(HttpMethod.Post, path, body, "application/json", ct);

    public Task<JsonObject> DeleteAsync(string path, CancellationToken ct) => SendAsync(HttpMethod.Delete, path, null, null, ct);

    public Task<JsonObject> PostBytesAsync(string path, byte[] content, CancellationToken ct) => SendBytesAsync(HttpMethod.Post, path, content, "application/wasm", ct);

    public async Task<JsonObject> SendBytesAsync(HttpMethod method, string path, byte[] content, string contentType, CancellationToken ct)
    {
        using var request = new HttpRequestMessage(method, path.TrimStart('/'))
        {
            Content = new ByteArrayContent(content),
        };
        request.Content.Headers.ContentType = new MediaTypeHeaderValue(contentType);
        return await SendAsync(request, ct);
    }

    public async Task<JsonObject> SendAsync(HttpMethod method, string path, JsonNode? body, string? contentType, CancellationToken ct)
    {
        using var request = new HttpRequestMessage(method, path.TrimStart('/'));
        if (body is not null)
        {
            request.Content = new StringContent(body.ToJsonString(), Encoding.UTF8);
            request.Content.Headers.ContentType = new MediaTypeHeaderValue(contentType ?? "application/json");
        }

        return await SendAsync(request, ct);
    }

    private async Task<JsonObject> SendAsync(HttpRequestMessage request, CancellationToken ct)
    {
        // Hand-built requests do not inherit the client's default version.
        request.Version = _http.DefaultRequestVersion;
        request.VersionPolicy = _http.DefaultVersionPolicy;
        HttpResponseMessage response;
        try
        {
            response = await _http.SendAsync(request, ct);
        }
        catch (HttpRequestException ex)
        {
            throw new ApiException(0, "Unreachable", $"cannot reach the Outpost server at {Server}: {Explain(ex)}");
        }
        catch (TaskCanceledException ex) when (!ct.IsCancellationRequested)
        {
            throw new ApiException(0, "Timeout", $"the Outpost server at {Server} did not answer within {_http.Timeout.TotalSeconds:F0} s ({ex.Message})");
        }

        using (response)
        {
            var text = await response.Content.ReadAsStringAsync(ct);
            return response.IsSuccessStatusCode ? Parse(text) as JsonObject ?? [] : throw Failure(response, text);
        }
    }

    private static JsonNode? Parse(string text)
    {
        try
        {
            return text.Length > 0 ? JsonNode.Parse(text) : null;
        }
        catch (JsonException)
        {
            return null; // not JSON: an error reports the raw text
        }
    }

    /// <summary>An error answer as an exception: the server's Status message, or the raw text.</summary>
    private static ApiException Failure(HttpResponseMessage response, string text) =>
        Parse(text) is JsonObject status && (string?)status["kind"] == "Status"
            ? new ApiException((int)response.StatusCode, (string?)status["reason"] ?? "", (string?)status["message"] ?? text, status)
            : new ApiException((int)response.StatusCode, response.StatusCode.ToString(), $"the server answered {(int)response.StatusCode}: {text}");

    /// <summary>
    /// A watch: the server's stream of <c>{"type", "object"}</c> lines, each yielded as it arrives,
    /// until the server ends the watch (its timeout) or <paramref name="ct"/> is cancelled.
    /// </summary>
    public async IAsyncEnumerable<JsonObject> WatchAsync(string path, [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken ct)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, path.TrimStart('/'))
        {
            Version = _http.DefaultRequestVersion,
            VersionPolicy = _http.DefaultVersionPolicy,
        };
        HttpResponseMessage response;
        try
        {
            response = await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, ct);
        }
        catch (HttpRequestException ex)
        {
            throw new ApiException(0, "Unreachable", $"cannot reach the Outpost server at {Server}: {Explain(ex)}");
        }

        using (response)
        {
            if (!response.IsSuccessStatusCode)
            {
                throw Failure(response, await response.Content.ReadAsStringAsync(ct));
            }

            using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(ct), Encoding.UTF8);
            while (true)
            {
                string? line;
                try
                {
                    line = await reader.ReadLineAsync(ct);
                }
                catch (Exception ex) when (ex is IOException or HttpRequestException && !ct.IsCancellationRequested)
                {
                    throw new ApiException(0, "Unreachable", $"the watch on {Server} broke off: {ex.Message}");
                }
                catch (OperationCanceledException) when (!ct.IsCancellationRequested)
                {
                    yield break; // the client's own request timeout: the caller watches again
                }

                if (line is null)
                {
                    yield break;
                }

                if (line.Length > 0 && JsonNode.Parse(line) is JsonObject change)
                {
                    yield return change;
                }
            }
        }
    }

    public void Dispose() => _http.Dispose();
}
