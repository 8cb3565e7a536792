using System.Collections.Concurrent;
using System.Text;
using System.Text.Json.Nodes;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Outpost.Core.Metrics;

namespace Outpost.Server.Monitoring;

/// <summary>
/// Delivers alert notifications: a JSON POST per firing or resolution. Each receiver URL has
/// its own queue, delivered in order (a resolution never overtakes its firing), each
/// notification retried with exponential backoff (1 s doubling to 1 min, 8 attempts) until
/// the receiver answers 2xx. A dead receiver holds up only its own queue.
/// </summary>
public sealed partial class WebhookSender : IMetricsSource, IDisposable
{
    public const int MaxAttempts = 8;

    private readonly ConcurrentDictionary<string, Channel<JsonObject>> _queues = new(StringComparer.Ordinal);
    private readonly HttpClient _http;
    private readonly TimeSpan _initialBackoff;
    private readonly ILogger<WebhookSender> _logger;
    private readonly CancellationTokenSource _stopping = new();
    private readonly ConcurrentDictionary<string, long> _results = new(StringComparer.Ordinal);

    public WebhookSender(ILogger<WebhookSender> logger, TimeSpan? initialBackoff = null)
    {
        _logger = logger;
        _initialBackoff = initialBackoff ?? TimeSpan.FromSeconds(1);
        _http = new HttpClient(new SocketsHttpHandler { ConnectTimeout = TimeSpan.FromSeconds(5), UseProxy = false }) { Timeout = TimeSpan.FromSeconds(10) };
        _http.DefaultRequestHeaders.UserAgent.ParseAdd($"Outpost/{Hosting.ServerInfo.Version}");
    }

    /// <summary>Queues a notification for a receiver; returns at once.</summary>
    public void Enqueue(Uri url, JsonObject payload)
    {
        ArgumentNullException.ThrowIfNull(url);
        var queue = _queues.GetOrAdd(url.AbsoluteUri, key =>
        {
            var channel = Channel.CreateUnbounded<JsonObject>(new UnboundedChannelOptions { SingleReader = true });
            _ = Task.Run(() => DeliverLoopAsync(new Uri(key), channel.Reader));
            return channel;
        });
        queue.Writer.TryWrite(payload);
    }

    private async Task DeliverLoopAsync(Uri url, ChannelReader<JsonObject> queue)
    {
        try
        {
            await foreach (var payload in queue.ReadAllAsync(_stopping.Token))
            {
                await DeliverAsync(url, payload);
            }
        }
        catch (OperationCanceledException) when (_stopping.IsCancellationRequested)
        {
        }
    }

    private async Task DeliverAsync(Uri url, JsonObject payload)
    {
        var delay = _initialBackoff;
        for (var attempt = 1; attempt <= MaxAttempts; attempt++)
        {
            payload["attempt"] = attempt;
            string failure;
            try
            {
                using var content = new StringContent(payload.ToJsonString(), Encoding.UTF8, "application/json");
                using var response = await _http.PostAsync(url, content, _stopping.Token);
                if (response.IsSuccessStatusCode)
                {
                    Count("delivered");
                    LogDelivered(_logger, (string?)payload["status"], (string?)payload["rule"], (string?)payload["target"]?["name"], url.Host, attempt);
                    return;
                }

                failure = $"{(int)response.StatusCode} {response.ReasonPhrase}";
            }
            catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException && !_stopping.IsCancellationRequested)
            {
                failure = ex.Message;
            }

            Count("retried");
            if (attempt == MaxAttempts)
            {
                Count("failed");
                LogGaveUp(_logger, (string?)payload["status"], (string?)payload["rule"], url.AbsoluteUri, MaxAttempts, failure);
                return;
            }

            LogRetrying(_logger, url.AbsoluteUri, failure, (long)delay.TotalMilliseconds);
            await Task.Delay(delay, _stopping.Token);
            delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, TimeSpan.FromMinutes(1).Ticks));
        }
    }

    private void Count(string result) => _results.AddOrUpdate(result, 1, (_, n) => n + 1);

    public Task WriteAsync(PrometheusText text, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(text);
        text.Counter("outpost_alert_notifications_total", "Alert webhook notifications: delivered (a 2xx answer) or failed (every attempt refused).");
        foreach (var result in new[] { "delivered", "failed" })
        {
            text.Sample("outpost_alert_notifications_total", _results.GetValueOrDefault(result), ("result", result));
        }

        text.Counter("outpost_alert_notification_retries_total", "Webhook attempts that failed and were retried (or given up).")
            .Sample("outpost_alert_notification_retries_total", _results.GetValueOrDefault("retried"));
        return Task.CompletedTask;
    }

    /// <summary>Stops sending; a second call (the container holds it under two service types) does nothing.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        _stopping.Cancel();
        _http.Dispose();
        _stopping.Dispose();
    }

    private int _disposed;

    [LoggerMessage(Level = LogLevel.Information, Message = "Alert {Status} for rule {Rule} ({Target}) delivered to {Host} on attempt {Attempt}")]
    private static partial void LogDelivered(ILogger logger, string? status, string? rule, string? target, string host, int attempt);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Webhook {Url} failed ({Failure}); retrying in {DelayMs} ms")]
    private static partial void LogRetrying(ILogger logger, string url, string failure, long delayMs);

    [LoggerMessage(Level = LogLevel.Error, Message = "Gave up on alert {Status} for rule {Rule} to {Url} after {Attempts} attempts: {Failure}")]
    private static partial void LogGaveUp(ILogger logger, string? status, string? rule, string url, int attempts, string failure);
}
