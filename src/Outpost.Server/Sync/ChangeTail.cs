using Outpost.Core.Resources;
using Outpost.Core.Store;

namespace Outpost.Server.Sync;

/// <summary>
/// The change log's recent entries, read once for every sync session. A session woken by a
/// change asks whether anything since its last look concerns its node, so a node joining (a
/// Node write) or one node's new labels do not make every other session read and diff its
/// desired state: with N nodes connected, that made each join cost O(N) store reads.
/// </summary>
public sealed class ChangeTail(IControlPlaneStore store) : IDisposable
{
    /// <summary>Entries kept: a session further behind than this recomputes, as it would without the tail.</summary>
    private const int Keep = 16_384;

    private const int Page = 1_000;

    private readonly SemaphoreSlim _reading = new(1, 1);
    private readonly Lock _lock = new();
    private readonly List<ResourceChange> _changes = [];
    private long _through;

    public void Dispose() => _reading.Dispose();

    /// <summary>Whether a change that concerns <paramref name="node"/> at all could have moved its desired state.</summary>
    public static bool ConcernsDesiredState(ResourceChange change, string node)
    {
        ArgumentNullException.ThrowIfNull(change);
        return change.Kind == ResourceKind.Node.Kind
            ? change.Name == node // its own labels place things on it; its deletion ends the session
            : change.Kind == ResourceKind.Application.Kind || change.Kind == ResourceKind.ConfigSet.Kind || change.Kind == ResourceKind.Secret.Kind
              || change.Kind == ResourceKind.Bucket.Kind || change.Kind == "Rollout";
    }

    /// <summary>Whether a change could have moved which buckets a node holds.</summary>
    public static bool ConcernsBuckets(ResourceChange change, string node)
    {
        ArgumentNullException.ThrowIfNull(change);
        return change.Kind == ResourceKind.Bucket.Kind || (change.Kind == ResourceKind.Node.Kind && change.Name == node);
    }

    /// <summary>
    /// True when a change in (<paramref name="after"/>, <paramref name="through"/>] concerns the
    /// node by <paramref name="concerns"/>, or when the tail cannot tell (the range is older than
    /// what it keeps, or not yet readable).
    /// </summary>
    public async Task<bool> AnyAsync(long after, long through, string node, Func<ResourceChange, string, bool> concerns, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(concerns);
        if (through <= after)
        {
            return false;
        }

        await CatchUpAsync(through, ct);
        lock (_lock)
        {
            if (_through < through || _changes.Count == 0 || _changes[0].Revision > after + 1)
            {
                return true;
            }

            for (var i = FirstAfter(after); i < _changes.Count && _changes[i].Revision <= through; i++)
            {
                if (concerns(_changes[i], node))
                {
                    return true;
                }
            }

            return false;
        }
    }

    /// <summary>Index of the first kept change after a revision (they are kept in revision order).</summary>
    private int FirstAfter(long revision)
    {
        int low = 0, high = _changes.Count;
        while (low < high)
        {
            var middle = (low + high) / 2;
            if (_changes[middle].Revision <= revision)
            {
                low = middle + 1;
            }
            else
            {
                high = middle;
            }
        }

        return low;
    }

    private async Task CatchUpAsync(long through, CancellationToken ct)
    {
        lock (_lock)
        {
            if (_through >= through)
            {
                return;
            }
        }

        await _reading.WaitAsync(ct);
        try
        {
            while (true)
            {
                long from;
                lock (_lock)
                {
                    from = _through;
                }

                if (from >= through)
                {
                    return;
                }

                var page = await store.ListChangesAsync(from, Page, ct);
                lock (_lock)
                {
                    if (page.Count > 0 && page[0].Revision != from + 1)
                    {
                        _changes.Clear(); // compacted past what was kept: the window starts again here
                    }

                    _changes.AddRange(page);
                    if (_changes.Count > Keep)
                    {
                        _changes.RemoveRange(0, _changes.Count - Keep);
                    }

                    if (page.Count > 0)
                    {
                        _through = page[^1].Revision;
                    }
                }

                if (page.Count < Page)
                {
                    return; // all that is visible: a revision published but not yet readable stays unknown
                }
            }
        }
        finally
        {
            _reading.Release();
        }
    }
}
