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
    private readonly SocketsHttpHandler _handler;
    private readonly bool _pinned;
    private HttpClient? _tunnels;
    private string? _rejection;

    /// <summary>A client of one server; a TLS server is verified against <paramref name="certificateAuthorityPem"/> (the system store when null).</summary>
    public ApiClient(string server, string token, string? certificateAuthorityPem = null)
    {
        var uri = new Uri(server.TrimEnd('/') + "/");
        _pinned = certificateAuthorityPem is not null;
        // As kubectl's dialer: 30 s covers the TCP connect and the TLS handshake, which a busy
        // server or a slow edge uplink can stretch well past a few seconds. A server that is down
        // refuses at once; only a blackholed address waits this out.
        var handler = _handler = new SocketsHttpHandler { ConnectTimeout = TimeSpan.FromSeconds(30) };
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

    /// <summary>HEAD: true when the server has it (2xx), false when it answers 404.</summary>
    public async Task<bool> ExistsAsync(string path, CancellationToken ct)
    {
        try
        {
            await SendAsync(new HttpRequestMessage(HttpMethod.Head, path.TrimStart('/')), ct);
            return true;
        }
        catch (ApiException ex) when (ex.Code == 404)
        {
            return false;
        }
    }

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
    /// A tunnel through the server (`port-forward`): one HTTP/2 POST whose request body carries
    /// what is written to the returned stream and whose response carries what it reads, both
    /// open until either side ends. No request timeout: a tunnel may idle for hours.
    /// </summary>
    public async Task<Tunnel> OpenTunnelAsync(string path, CancellationToken ct)
    {
        _tunnels ??= new HttpClient(_handler, disposeHandler: false) { BaseAddress = _http.BaseAddress, Timeout = Timeout.InfiniteTimeSpan };
        var pipe = new System.IO.Pipelines.Pipe();
        var request = new HttpRequestMessage(HttpMethod.Post, path.TrimStart('/'))
        {
            Version = HttpVersion.Version20,
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
            Content = new PipeContent(pipe.Reader),
        };
        request.Headers.Authorization = _http.DefaultRequestHeaders.Authorization;
        HttpResponseMessage response;
        try
        {
            response = await _tunnels.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, ct);
        }
        catch (HttpRequestException ex)
        {
            request.Dispose();
            throw new ApiException(0, "Unreachable", $"cannot reach the Outpost server at {Server}: {Explain(ex)}");
        }

        if (!response.IsSuccessStatusCode)
        {
            using (request)
            using (response)
            {
                await pipe.Writer.CompleteAsync();
                throw Failure(response, await response.Content.ReadAsStringAsync(ct));
            }
        }

        return new Tunnel(request, response, await response.Content.ReadAsStreamAsync(ct), pipe.Writer);
    }

    /// <summary>The first byte of a tunnel's request body (the server checks and drops it).</summary>
    private static readonly byte[] TunnelMarker = [0x01];

    /// <summary>Request content that sends what is written to a pipe, as it is written.</summary>
    private sealed class PipeContent(System.IO.Pipelines.PipeReader reader) : HttpContent
    {
        protected override async Task SerializeToStreamAsync(Stream stream, System.Net.TransportContext? context)
        {
            try
            {
                // HTTP/2 sends the request's headers with its first body bytes (a flush of nothing sends
                // nothing), and the caller waits for the response before writing: open with the marker
                // byte, or the server would never hear of the tunnel.
                await stream.WriteAsync(TunnelMarker);
                await stream.FlushAsync();
                while (true)
                {
                    var result = await reader.ReadAsync();
                    foreach (var segment in result.Buffer)
                    {
                        await stream.WriteAsync(segment);
                    }

                    await stream.FlushAsync();
                    reader.AdvanceTo(result.Buffer.End);
                    if (result.IsCompleted)
                    {
                        break;
                    }
                }
            }
            finally
            {
                // Also when the server ended the request: the writer then sees the tunnel closed
                // instead of waiting on a pipe nobody reads.
                await reader.CompleteAsync();
            }
        }

        protected override bool TryComputeLength(out long length)
        {
            length = -1;
            return false;
        }
    }

    /// <summary>The two directions of a tunnel as one stream; <see cref="ShutdownWriteAsync"/> half-closes.</summary>
    internal sealed class Tunnel(HttpRequestMessage request, HttpResponseMessage response, Stream down, System.IO.Pipelines.PipeWriter up) : Stream
    {
        public override bool CanRead => true;

        public override bool CanWrite => true;

        public override bool CanSeek => false;

        public override long Length => throw new NotSupportedException();

        public override long Position
        {
            get => throw new NotSupportedException();
            set => throw new NotSupportedException();
        }

        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) => down.ReadAsync(buffer, cancellationToken);

        public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            var result = await up.WriteAsync(buffer, cancellationToken);
            if (result.IsCompleted)
            {
                throw new IOException("the tunnel is closed");
            }
        }

        /// <summary>No more bytes from this side; the other side's bytes still arrive.</summary>
        public ValueTask ShutdownWriteAsync() => up.CompleteAsync();

        public override Task FlushAsync(CancellationToken cancellationToken) => up.FlushAsync(cancellationToken).AsTask();

        public override void Flush() => FlushAsync(CancellationToken.None).GetAwaiter().GetResult();

        public override int Read(byte[] buffer, int offset, int count) => down.Read(buffer, offset, count);

        public override void Write(byte[] buffer, int offset, int count) => WriteAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                up.Complete();
                down.Dispose();
                response.Dispose();
                request.Dispose();
            }

            base.Dispose(disposing);
        }
    }

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

    public void Dispose()
    {
        _tunnels?.Dispose();
        _http.Dispose();
    }
}
