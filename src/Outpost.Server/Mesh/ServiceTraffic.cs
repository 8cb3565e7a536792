using System.Collections.Concurrent;

namespace Outpost.Server.Mesh;

/// <summary>
/// What this server relayed for nodes' dials, per service, since it started: dials by result,
/// wires open, bytes each way, and heals (a dial whose first endpoint failed and another answered).
/// </summary>
public sealed class ServiceTraffic
{
    private readonly ConcurrentDictionary<string, Counters> _services = new(StringComparer.Ordinal);

    /// <summary>The counters of <paramref name="service"/>, made on first use.</summary>
    public Counters Of(string service) => _services.GetOrAdd(service, _ => new Counters());

    /// <summary>Every service that has counters, by name.</summary>
    public IEnumerable<(string Service, Counters Counters)> All =>
        _services.ToArray().OrderBy(s => s.Key, StringComparer.Ordinal).Select(s => (s.Key, s.Value));

    /// <summary>One service's counters; each changes atomically.</summary>
    public sealed class Counters
    {
        private long _relayed;
        private long _unavailable;
        private long _notAllowed;
        private long _heals;
        private long _open;
        private long _bytesToEndpoints;
        private long _bytesFromEndpoints;

        public long Relayed => Interlocked.Read(ref _relayed);

        public long Unavailable => Interlocked.Read(ref _unavailable);

        public long NotAllowed => Interlocked.Read(ref _notAllowed);

        public long Heals => Interlocked.Read(ref _heals);

        public long Open => Interlocked.Read(ref _open);

        public long BytesToEndpoints => Interlocked.Read(ref _bytesToEndpoints);

        public long BytesFromEndpoints => Interlocked.Read(ref _bytesFromEndpoints);

        public void CountUnavailable() => Interlocked.Increment(ref _unavailable);

        public void CountNotAllowed() => Interlocked.Increment(ref _notAllowed);

        /// <summary>A relayed wire opened (after <paramref name="failedFirst"/> endpoints failed: a heal when any did).</summary>
        public void Opened(int failedFirst)
        {
            Interlocked.Increment(ref _relayed);
            Interlocked.Increment(ref _open);
            if (failedFirst > 0)
            {
                Interlocked.Increment(ref _heals);
            }
        }

        /// <summary>A relayed wire ended, having carried these bytes.</summary>
        public void Closed(long toEndpoint, long fromEndpoint)
        {
            Interlocked.Decrement(ref _open);
            Interlocked.Add(ref _bytesToEndpoints, toEndpoint);
            Interlocked.Add(ref _bytesFromEndpoints, fromEndpoint);
        }
    }
}
