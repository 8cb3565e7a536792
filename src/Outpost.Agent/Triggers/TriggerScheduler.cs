using System.Globalization;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Outpost.Agent.Apps;
using Outpost.Agent.Host;
using Outpost.Agent.State;
using Outpost.Wasm.Events;

namespace Outpost.Agent.Triggers;

/// <summary>
/// Runs apps on their timer and topic triggers. Timers tick per app and skip a tick while
/// the app is at its concurrency limit. Topic messages (from apps' publish or devices'
/// POST /_outpost/topics/{topic}) are durable in the outbox first, then queued for local
/// subscribers; when that bounded queue is full a message is not delivered locally, and
/// every such drop is counted and logged.
/// </summary>
public sealed partial class TriggerScheduler : IDisposable
{
    private readonly AppRegistry _apps;
    private readonly EventRunner _runner;
    private readonly LocalDataStore _data;
    private readonly GuestThreads _threads;
    private readonly ILogger<TriggerScheduler> _logger;
    private readonly Channel<TopicMessage> _messages = Channel.CreateBounded<TopicMessage>(new BoundedChannelOptions(1024)
    {
        FullMode = BoundedChannelFullMode.Wait,
        SingleReader = true,
    });
    private readonly CancellationTokenSource _stop = new();
    private readonly Lock _lock = new();
    private readonly Dictionary<LoadedApp, CancellationTokenSource> _timers = [];
    private readonly Task _dispatcher;
    private long _dropped;

    private sealed record TopicMessage(string Topic, string Publisher, byte[] Payload);

    public TriggerScheduler(AppRegistry apps, EventRunner runner, AgentHostServices services, LocalDataStore data, GuestThreads threads, ILogger<TriggerScheduler> logger)
    {
        _apps = apps;
        _runner = runner;
        _data = data;
        _threads = threads;
        _logger = logger;
        apps.AppsChanged += SyncTimers;
        services.Published += (topic, app, payload) => Enqueue(new TopicMessage(topic, app, payload));
        _dispatcher = Task.Run(DispatchAsync);
        SyncTimers();
    }

    /// <summary>Messages a full queue kept from local subscribers (they are still in the outbox).</summary>
    public long Dropped => Interlocked.Read(ref _dropped);

    /// <summary>Publishes from outside any app (a device via the gateway): outbox first, then local subscribers. -1: refused.</summary>
    public long Publish(string topic, string publisher, byte[] payload)
    {
        var sequence = _data.Append(topic, publisher, payload);
        if (sequence >= 0)
        {
            Enqueue(new TopicMessage(topic, publisher, payload));
        }

        return sequence;
    }

    private void Enqueue(TopicMessage message)
    {
        if (!_messages.Writer.TryWrite(message))
        {
            var dropped = Interlocked.Increment(ref _dropped);
            LogDropped(_logger, message.Topic, dropped);
        }
    }

    private async Task DispatchAsync()
    {
        try
        {
            await foreach (var message in _messages.Reader.ReadAllAsync(_stop.Token))
            {
                foreach (var app in _apps.Loaded.Where(a => a.Spec.Topic == message.Topic))
                {
                    await RunAsync(app, "topic", message.Payload,
                        [new("OUTPOST_TRIGGER", "topic"), new("OUTPOST_TOPIC", message.Topic), new("OUTPOST_PUBLISHER", message.Publisher)],
                        wait: TimeSpan.FromMilliseconds(app.Spec.Limits.TimeoutMs));
                }
            }
        }
        catch (OperationCanceledException) when (_stop.IsCancellationRequested)
        {
        }
    }

    private void SyncTimers()
    {
        lock (_lock)
        {
            var loaded = _apps.Loaded.Where(a => a.Spec.TimerEvery is not null).ToHashSet();
            foreach (var (app, cts) in _timers.Where(t => !loaded.Contains(t.Key)).ToList())
            {
                cts.Cancel();
                cts.Dispose();
                _timers.Remove(app);
            }

            foreach (var app in loaded.Where(a => !_timers.ContainsKey(a)))
            {
                var cts = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
                _timers[app] = cts;
                _ = Task.Run(() => TickAsync(app, cts.Token));
            }
        }
    }

    private async Task TickAsync(LoadedApp app, CancellationToken ct)
    {
        using var timer = new PeriodicTimer(app.Spec.TimerEvery!.Value);
        try
        {
            while (await timer.WaitForNextTickAsync(ct))
            {
                var now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds().ToString(CultureInfo.InvariantCulture);
                await RunAsync(app, "timer", ReadOnlyMemory<byte>.Empty, [new("OUTPOST_TRIGGER", "timer"), new("OUTPOST_TICK_MS", now)], wait: TimeSpan.Zero);
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    private async Task RunAsync(LoadedApp app, string trigger, ReadOnlyMemory<byte> payload, KeyValuePair<string, string>[] eventEnv, TimeSpan wait)
    {
        if (!app.TryAcquire())
        {
            return; // retired meanwhile
        }

        try
        {
            if (!await app.Gate.EnterAsync(wait, _stop.Token))
            {
                LogSkipped(_logger, app.Name, trigger);
                return;
            }

            try
            {
                var outcome = await Task.Run(() =>
                {
                    var run = _threads.Enter();
                    try
                    {
                        return app.Wasm.RunEvent(app, _runner, eventEnv, payload);
                    }
                    finally
                    {
                        _threads.Exit(run);
                    }
                });
                if (!outcome.Succeeded)
                {
                    LogFailed(_logger, app.Name, trigger, outcome.Error ?? "", outcome.Stderr ?? "");
                }
            }
            finally
            {
                app.Gate.Exit();
            }
        }
        finally
        {
            app.Release();
        }
    }

    public void Dispose()
    {
        _stop.Cancel();
        _messages.Writer.TryComplete();
        lock (_lock)
        {
            foreach (var cts in _timers.Values)
            {
                cts.Dispose();
            }

            _timers.Clear();
        }

        _stop.Dispose();
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "App '{App}' {Trigger} run failed: {Error} {Stderr}")]
    private static partial void LogFailed(ILogger logger, string app, string trigger, string error, string stderr);

    [LoggerMessage(Level = LogLevel.Warning, Message = "App '{App}' {Trigger} run skipped: the app is at its concurrency limit")]
    private static partial void LogSkipped(ILogger logger, string app, string trigger);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Topic '{Topic}': local delivery queue full, message not delivered to subscribers ({Dropped} so far; it is still in the outbox)")]
    private static partial void LogDropped(ILogger logger, string topic, long dropped);
}
