using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Outpost.Core.Store;

namespace Outpost.Server.Hosting;

/// <summary>
/// Which server replica runs the controllers (rollouts, alerts, node events, compaction): the
/// holder of the store's <see cref="LeaseName"/> lease. It asks at start and renews every
/// <see cref="RenewEvery"/>; a holder that has not renewed for <see cref="StepDownAfter"/> (well
/// inside the lease's <see cref="Ttl"/>) stops its controllers before the lease can pass to another
/// replica, and one that is refused stops at once. Each term carries the lease's epoch
/// (<see cref="Fence"/>): a write fenced with it is refused once another replica has taken over.
/// With one server (SQLite) this is a lease renewal every two seconds and nothing else.
/// </summary>
public sealed partial class Leadership(IControlPlaneStore store, TimeProvider time, ILogger<Leadership> logger) : BackgroundService, Monitoring.IMetricsSource
{
    public Task WriteAsync(Core.Metrics.PrometheusText text, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(text);
        var fence = Fence;
        text.Gauge("outpost_server_leader", "1 while this server leads the controllers (holds the controllers' lease), else 0.").Sample("outpost_server_leader", fence is null ? 0 : 1);
        text.Gauge("outpost_server_leader_epoch", "The controllers' lease epoch this server leads under (0: it does not lead).").Sample("outpost_server_leader_epoch", fence?.Epoch ?? 0);
        return Task.CompletedTask;
    }

    public const string LeaseName = "controllers";

    /// <summary>How long a grant lasts: a dead leader's controllers run again elsewhere within this and one renewal.</summary>
    public static readonly TimeSpan Ttl = TimeSpan.FromSeconds(10);

    public static readonly TimeSpan RenewEvery = TimeSpan.FromSeconds(2);

    public static readonly TimeSpan StepDownAfter = TimeSpan.FromSeconds(7);

    private readonly Lock _lock = new();
    private Term? _term;
    private TaskCompletionSource<Term> _nextTerm = new(TaskCreationOptions.RunContinuationsAsynchronously);

    private sealed record Term(Fence Fence, CancellationTokenSource Ended, DateTimeOffset Since);

    /// <summary>This server's name in the lease: host, process and a random part (two servers never share one).</summary>
    public string Holder { get; } = $"{Environment.MachineName}/{Environment.ProcessId}/{Guid.NewGuid().ToString("N")[..8]}";

    /// <summary>The current term's fence, or null while this server does not lead.</summary>
    public Fence? Fence
    {
        get
        {
            lock (_lock)
            {
                return _term?.Fence;
            }
        }
    }

    public bool IsLeader => Fence is not null;

    /// <summary>How many times the store answered this server's ask for the lease.</summary>
    internal long Attempts => Interlocked.Read(ref _attempts);

    private long _attempts;

    /// <summary>
    /// Runs <paramref name="work"/> in each term this server leads: started when a term begins,
    /// cancelled when it ends, started again at the next; returns when the server stops.
    /// </summary>
    public async Task RunWhileLeaderAsync(Func<CancellationToken, Task> work, CancellationToken stoppingToken)
    {
        ArgumentNullException.ThrowIfNull(work);
        while (!stoppingToken.IsCancellationRequested)
        {
            Task<Term> next;
            lock (_lock)
            {
                next = _term is { } current ? Task.FromResult(current) : _nextTerm.Task;
            }

            Term term;
            try
            {
                term = await next.WaitAsync(stoppingToken);
            }
            catch (OperationCanceledException)
            {
                return;
            }

            using var during = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken, term.Ended.Token);
            try
            {
                await work(during.Token);

                // Work that returned by itself waits for the next term, not this one again.
                await Task.Delay(Timeout.Infinite, during.Token);
            }
            catch (OperationCanceledException) when (during.IsCancellationRequested)
            {
            }
        }
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var lastRenewed = DateTimeOffset.MinValue;
        try
        {
            while (!stoppingToken.IsCancellationRequested)
            {
                var left = lastRenewed + StepDownAfter - time.GetUtcNow();
                if (IsLeader && left <= TimeSpan.Zero)
                {
                    End($"the lease was not renewed for {StepDownAfter.TotalSeconds:0} s");
                }

                // An ask that hangs (the database out of reach) is given up in time to step down.
                using var attempt = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
                attempt.CancelAfter(IsLeader ? TimeSpan.FromTicks(Math.Clamp(left.Ticks, TimeSpan.FromMilliseconds(500).Ticks, 2 * RenewEvery.Ticks)) : 2 * RenewEvery);
                try
                {
                    var lease = await store.AcquireLeaseAsync(LeaseName, Holder, Ttl, attempt.Token);
                    Interlocked.Increment(ref _attempts);
                    if (lease.Holder == Holder)
                    {
                        lastRenewed = time.GetUtcNow();
                        Begin(lease);
                    }
                    else
                    {
                        End($"replica {lease.Holder} holds the lease (epoch {lease.Epoch})");
                    }
                }
                catch (Exception ex) when (!stoppingToken.IsCancellationRequested)
                {
                    LogRenewFailed(logger, ex is OperationCanceledException ? "no answer in time" : ex.Message);
                    if (time.GetUtcNow() - lastRenewed >= StepDownAfter)
                    {
                        End($"the lease was not renewed for {StepDownAfter.TotalSeconds:0} s");
                    }
                }

                await Task.Delay(RenewEvery, time, stoppingToken);
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        await base.StopAsync(cancellationToken);
        if (End("the server is stopping"))
        {
            try
            {
                // Hand over at once rather than a lease later.
                await store.ReleaseLeaseAsync(LeaseName, Holder, cancellationToken);
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                LogRenewFailed(logger, ex.Message);
            }
        }
    }

    private void Begin(LeaderLease lease)
    {
        Term? ended = null;
        TaskCompletionSource<Term> started;
        Term term;
        lock (_lock)
        {
            if (_term is { } current && current.Fence.Epoch == lease.Epoch)
            {
                return;
            }

            ended = _term;
            term = new Term(new Fence(LeaseName, lease.Epoch), new CancellationTokenSource(), time.GetUtcNow());
            _term = term;
            started = _nextTerm;
            _nextTerm = new TaskCompletionSource<Term>(TaskCreationOptions.RunContinuationsAsynchronously);
        }

        if (ended is not null)
        {
            ended.Ended.Cancel();
        }

        LogLeading(logger, Holder, lease.Epoch);
        started.TrySetResult(term);
    }

    /// <summary>Ends the current term, if any; true when there was one. (A term's token source is left to the collector: work may still hold its token.)</summary>
    private bool End(string why)
    {
        Term? ended;
        lock (_lock)
        {
            ended = _term;
            _term = null;
        }

        if (ended is null)
        {
            return false;
        }

        ended.Ended.Cancel();
        LogSteppedDown(logger, ended.Fence.Epoch, why);
        return true;
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "This server ({Holder}) leads the controllers, lease epoch {Epoch}")]
    private static partial void LogLeading(ILogger logger, string holder, long epoch);

    [LoggerMessage(Level = LogLevel.Warning, Message = "This server stopped leading the controllers (epoch {Epoch}): {Why}")]
    private static partial void LogSteppedDown(ILogger logger, long epoch, string why);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Renewing the controllers' lease failed: {Reason}")]
    private static partial void LogRenewFailed(ILogger logger, string reason);
}
