using System.Collections.Concurrent;
using System.Text;
using Outpost.Wasm.Host;

namespace Outpost.Commands;

/// <summary>
/// The Outpost host functions for `outpost wasm run` and `wasm serve`, without a node: log lines
/// and published messages go to stderr, config comes from --config, buckets live in memory for
/// the process (kept across the requests `wasm serve` answers), Secrets are absent, and http-out
/// reaches the hosts --http-out allows, directly (there is no mesh here).
/// </summary>
internal sealed class WasmLocalServices(IReadOnlyDictionary<string, string> config, TextWriter log) : IHostServices, IDisposable
{
    private static readonly string[] Levels = ["debug", "info", "warn", "error"];
    private readonly ConcurrentDictionary<(string Bucket, string Key), byte[]> _kv = new();
    private readonly HttpClient _http = new(new SocketsHttpHandler { AllowAutoRedirect = false });
    private readonly Lock _write = new();

    public void Log(string app, long revision, int level, string message) =>
        Write($"[{(level is >= 0 and < 4 ? Levels[level] : "info")}] {message}");

    public string? GetConfig(string app, string key) => config.TryGetValue(key, out var value) ? value : null;

    public string? GetSecret(string app, string key) => null;

    public byte[]? KvGet(string app, string bucket, string key) => _kv.TryGetValue((bucket, key), out var value) ? value : null;

    public bool KvSet(string app, string bucket, string key, ReadOnlySpan<byte> value)
    {
        _kv[(bucket, key)] = value.ToArray();
        return true;
    }

    public int KvDelete(string app, string bucket, string key) => _kv.TryRemove((bucket, key), out _) ? 1 : 0;

    public bool Publish(string app, string topic, ReadOnlySpan<byte> payload)
    {
        Write($"[publish {topic}] {Encoding.UTF8.GetString(payload)}");
        return true;
    }

    public HttpOutResponse HttpRequest(string app, HttpOutRequest request, TimeSpan timeout)
    {
        ArgumentNullException.ThrowIfNull(request);
        if (request.Url.Host.EndsWith(".mesh", StringComparison.Ordinal))
        {
            throw new HttpOutException($"{request.Url.Host}: there is no mesh outside a fleet");
        }

        using var message = new HttpRequestMessage(new HttpMethod(request.Method), request.Url);
        if (request.Body.Length > 0)
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

        using var cancel = new CancellationTokenSource(timeout);
        try
        {
            using var response = _http.Send(message, HttpCompletionOption.ResponseHeadersRead, cancel.Token);
            using var body = new MemoryStream();
            using var stream = response.Content.ReadAsStream(cancel.Token);
            var buffer = new byte[16 * 1024];
            int n;
            while ((n = stream.Read(buffer)) > 0)
            {
                if (body.Length + n > request.MaxResponseBytes)
                {
                    throw new HttpOutException($"the response from {request.Url.Host} is over {request.MaxResponseBytes} bytes");
                }

                body.Write(buffer, 0, n);
            }

            var headers = response.Headers.Concat(response.Content.Headers)
                .SelectMany(h => h.Value.Select(v => new KeyValuePair<string, string>(h.Key, v))).ToList();
            return new HttpOutResponse((int)response.StatusCode, headers, body.ToArray());
        }
        catch (Exception e) when (e is HttpRequestException or OperationCanceledException or IOException)
        {
            throw new HttpOutException(cancel.IsCancellationRequested ? $"{request.Url.Host} did not answer in {timeout.TotalMilliseconds:F0} ms" : $"{request.Url.Host}: {e.Message}");
        }
    }

    private void Write(string line)
    {
        lock (_write)
        {
            log.WriteLine(line);
            log.Flush();
        }
    }

    public void Dispose() => _http.Dispose();
}
