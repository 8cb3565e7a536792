using Google.Protobuf;
using Microsoft.Extensions.Hosting;
using Outpost.Protocol;

namespace Outpost.Server.Mesh;

/// <summary>
/// The registry as nodes get it: computed once for all sessions, at most every
/// <see cref="Interval"/> or at once when told, and handed to each session only when it changed.
/// </summary>
public sealed class MeshPublisher(MeshRegistry registry) : BackgroundService
{
    public static readonly TimeSpan Interval = TimeSpan.FromMilliseconds(500);

    private readonly Lock _lock = new();
    private (long Version, MeshUpdate Update) _current = (0, new MeshUpdate());
    private TaskCompletionSource _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly SemaphoreSlim _wake = new(0, 1);

    /// <summary>The latest registry and its version (0 before the first).</summary>
    public (long Version, MeshUpdate Update) Current
    {
        get
        {
            lock (_lock)
            {
                return _current;
            }
        }
    }

    /// <summary>Recompute now (a node connected or left).</summary>
    public void Poke()
    {
        if (_wake.CurrentCount == 0)
        {
            try
            {
                _wake.Release();
            }
            catch (SemaphoreFullException)
            {
                // Already poked.
            }
        }
    }

    /// <summary>Completes once the registry is newer than <paramref name="seen"/>.</summary>
    public Task WaitForNewerAsync(long seen, CancellationToken cancellationToken)
    {
        lock (_lock)
        {
            return _current.Version > seen ? Task.CompletedTask : _changed.Task.WaitAsync(cancellationToken);
        }
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        byte[] last = [];
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                var update = MeshRegistry.ToUpdate(await registry.ListAsync(stoppingToken));
                var bytes = update.ToByteArray();
                if (!bytes.AsSpan().SequenceEqual(last))
                {
                    last = bytes;
                    TaskCompletionSource changed;
                    lock (_lock)
                    {
                        _current = (_current.Version + 1, update);
                        changed = _changed;
                        _changed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                    }

                    changed.TrySetResult();
                }

                await _wake.WaitAsync(Interval, stoppingToken);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex) when (ex is Microsoft.Data.Sqlite.SqliteException or InvalidOperationException or IOException)
            {
                // The store is busy or closing: the next round tries again.
                await Task.Delay(Interval, stoppingToken);
            }
        }
    }

    public override void Dispose()
    {
        _wake.Dispose();
        base.Dispose();
    }
}
