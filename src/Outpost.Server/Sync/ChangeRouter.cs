using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Outpost.Core.Resources;
using Outpost.Core.Store;

namespace Outpost.Server.Sync;

/// <summary>
/// Wakes the sync sessions a change concerns, and only those. One loop follows the store's
/// change log and keeps, per node, the newest change that may move what the node holds: a
/// change of anything placeable (apps, config sets, secrets, buckets, rollouts) concerns every
/// node, a Node write only that node. A session waits here, not on the store's revision, so a
/// node joining (a Node write) costs one wake-up, not one per connected node: with ten thousand
/// nodes, waking every session for each join made joins slower the more nodes there were.
/// </summary>
public sealed partial class ChangeRouter(IControlPlaneStore store, ILogger<ChangeRouter> logger) : BackgroundService
{
    private const int Page = 1_000;

    /// <summary>What a session waits for.</summary>
    public enum Interest
    {
        /// <summary>What the node should hold: anything placeable, or its own Node.</summary>
        DesiredState,

        /// <summary>Which buckets the node holds: Buckets, or its own Node (its labels).</summary>
        Buckets,
    }

    private readonly Lock _lock = new();
    private readonly Dictionary<string, long> _lastOfNode = new(StringComparer.Ordinal);
    private readonly Dictionary<string, LinkedList<Waiter>> _waiters = new(StringComparer.Ordinal);
    private long _through;
    private long _lastPlaceable;
    private long _lastBucket;
    private long _lastGap; // the last revision routed past a compacted stretch: any node may have changed in it
    private long _lastAnyNode; // the last revision that wrote some Node (joined, relabelled, deleted)

    /// <summary>Revisions routed so far (tests wait on it).</summary>
    public long Through
    {
        get
        {
            lock (_lock)
            {
                return _through;
            }
        }
    }

    /// <summary>Completes once a change after <paramref name="after"/> concerns <paramref name="node"/> by <paramref name="interest"/>.</summary>
    public Task WaitAsync(string node, long after, Interest interest, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(node);
        if (ct.IsCancellationRequested)
        {
            return Task.FromCanceled(ct);
        }

        Waiter waiter;
        lock (_lock)
        {
            if (LastFor(node, interest) > after)
            {
                return Task.CompletedTask;
            }

            if (!_waiters.TryGetValue(node, out var list))
            {
                _waiters[node] = list = new LinkedList<Waiter>();
            }

            waiter = new Waiter(this, node, after, interest);
            waiter.Node = list.AddLast(waiter);
        }

        if (ct.CanBeCanceled)
        {
            waiter.Registration = ct.UnsafeRegister(static (state, token) => ((Waiter)state!).Cancel(token), waiter);
            if (waiter.Task.IsCompleted)
            {
                waiter.Registration.Unregister();
            }
        }

        return waiter.Task;
    }

    /// <summary>
    /// True when a read of <paramref name="node"/> made at revision <paramref name="readAt"/> is
    /// still current at revision <paramref name="now"/>: every change through
    /// <paramref name="now"/> has been routed and none of them wrote that Node. (Its status moves
    /// without a revision; what placement reads of it, its runtimes, is written before its session
    /// sends anything.)
    /// </summary>
    public bool NodeUnchanged(string node, long readAt, long now)
    {
        ArgumentNullException.ThrowIfNull(node);
        lock (_lock)
        {
            return _through >= now && Math.Max(_lastGap, _lastOfNode.GetValueOrDefault(node)) <= readAt;
        }
    }

    /// <summary>
    /// True when no Node has been written (created, changed or deleted) after revision
    /// <paramref name="readAt"/> through revision <paramref name="now"/>, and every change through
    /// <paramref name="now"/> has been routed: a list of the fleet's nodes made at
    /// <paramref name="readAt"/> still names them all.
    /// </summary>
    public bool NodesUnchanged(long readAt, long now)
    {
        lock (_lock)
        {
            return readAt >= 0 && _through >= now && Math.Max(_lastGap, _lastAnyNode) <= readAt;
        }
    }

    /// <summary>Called under the lock.</summary>
    private long LastFor(string node, Interest interest) =>
        Math.Max(interest == Interest.DesiredState ? _lastPlaceable : _lastBucket, _lastOfNode.GetValueOrDefault(node));

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await store.Changes.WaitAfterAsync(Through, stoppingToken);
                await RouteAsync(stoppingToken);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                LogRouteFailed(logger, ex.Message);
                await Task.Delay(TimeSpan.FromMilliseconds(250), stoppingToken);
            }
        }
    }

    /// <summary>Reads the change log past what was routed and wakes whom it concerns.</summary>
    private async Task RouteAsync(CancellationToken ct)
    {
        while (true)
        {
            var from = Through;
            var page = await store.ListChangesAsync(from, Page, ct);
            if (page.Count == 0)
            {
                return;
            }

            List<Waiter> woken = [];
            lock (_lock)
            {
                // Compacted past what was routed: nobody can tell what changed, so it concerns everyone.
                var everyone = page[0].Revision != from + 1;
                if (everyone)
                {
                    _lastPlaceable = _lastBucket = _lastGap = page[0].Revision;
                }

                var touched = new HashSet<string>(StringComparer.Ordinal);
                foreach (var change in page)
                {
                    if (change.Kind == ResourceKind.Node.Kind)
                    {
                        _lastOfNode[change.Name] = _lastAnyNode = change.Revision;
                        touched.Add(change.Name);
                    }
                    else if (IsPlaceable(change.Kind))
                    {
                        _lastPlaceable = change.Revision;
                        everyone = true;
                        if (change.Kind == ResourceKind.Bucket.Kind)
                        {
                            _lastBucket = change.Revision;
                        }
                    }
                }

                _through = page[^1].Revision;
                foreach (var node in everyone ? _waiters.Keys.ToList() : [.. touched])
                {
                    if (!_waiters.TryGetValue(node, out var list))
                    {
                        continue;
                    }

                    for (var item = list.First; item is not null;)
                    {
                        var next = item.Next;
                        if (LastFor(node, item.Value.Interest) > item.Value.After)
                        {
                            list.Remove(item);
                            woken.Add(item.Value);
                        }

                        item = next;
                    }

                    if (list.Count == 0)
                    {
                        _waiters.Remove(node);
                    }
                }
            }

            foreach (var waiter in woken)
            {
                waiter.Complete();
            }

            if (page.Count < Page)
            {
                return;
            }
        }
    }

    private static bool IsPlaceable(string kind) =>
        kind == ResourceKind.Application.Kind || kind == ResourceKind.ConfigSet.Kind || kind == ResourceKind.Secret.Kind
        || kind == ResourceKind.Bucket.Kind || kind == "Rollout";

    private void Remove(Waiter waiter)
    {
        lock (_lock)
        {
            if (waiter.Node?.List is { } list)
            {
                list.Remove(waiter.Node);
                if (list.Count == 0)
                {
                    _waiters.Remove(waiter.NodeName);
                }
            }
        }
    }

    private sealed class Waiter(ChangeRouter router, string node, long after, Interest interest) : TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)
    {
        public string NodeName { get; } = node;

        public long After { get; } = after;

        public Interest Interest { get; } = interest;

        public LinkedListNode<Waiter>? Node { get; set; }

        public CancellationTokenRegistration Registration { get; set; }

        public void Complete()
        {
            Registration.Unregister();
            TrySetResult();
        }

        public void Cancel(CancellationToken token)
        {
            router.Remove(this);
            TrySetCanceled(token);
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Routing changes to sync sessions failed; trying again: {Reason}")]
    private static partial void LogRouteFailed(ILogger logger, string reason);
}
