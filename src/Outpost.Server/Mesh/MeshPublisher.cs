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

    /// <summary>
    /// The least time between two computations. Every stream that opens or closes pokes the
    /// publisher: when thousands of nodes reconnect at once, computing at every poke ran it back
    /// to back through the storm (3.6 % of the server's CPU with 3,000 nodes and no service). A
    /// lone poke is served at once.
    /// </summary>
    public static readonly TimeSpan MinSpacing = TimeSpan.FromMilliseconds(100);

    private readonly Lock _lock = new();
    private (long Version, MeshUpdate Update, IReadOnlyList<MeshService> Services) _current = (0, new MeshUpdate(), []);
    // Moves with the version: each session waits on it (a ChangeFeed: a wait that ends leaves in constant time).
    private readonly Core.Store.ChangeFeed _versions = new();
    private readonly SemaphoreSlim _wake = new(0, 1);

    /// <summary>The latest registry and its version (0 before the first).</summary>
    public (long Version, MeshUpdate Update) Current
    {
        get
        {
            lock (_lock)
            {
                return (_current.Version, _current.Update);
            }
        }
    }

    /// <summary>The nodes that hold an endpoint of any service in the latest registry.</summary>
    public IReadOnlyCollection<string> EndpointNodes
    {
        get
        {
            lock (_lock)
            {
                return _endpointNodes;
            }
        }
    }

    private IReadOnlyCollection<string> _endpointNodes = [];

    /// <summary>
    /// The latest registry as node <paramref name="node"/> gets it, with its version: the services
    /// (shared by every node), the node's site, what it may call, and who may call its endpoints.
    /// </summary>
    public (long Version, MeshUpdate Update) For(string node, string site)
    {
        (long Version, MeshUpdate Update, IReadOnlyList<MeshService> Services) current;
        lock (_lock)
        {
            current = _current;
        }

        var own = new MeshUpdate { Site = site };
        own.Services.Add(current.Update.Services);
        foreach (var service in current.Services)
        {
            if (service.Clients.Contains(node))
            {
                own.Calls.Add(service.Name);
            }

            if (service.Endpoints.Any(e => e.Node == node))
            {
                var names = new NodeNames();
                names.Names.Add(service.Clients);
                own.Clients[service.Name] = names;
            }
        }

        return (current.Version, own);
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
    public Task WaitForNewerAsync(long seen, CancellationToken cancellationToken) => _versions.WaitAfterAsync(seen, cancellationToken);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        byte[] last = [];
        var computed = 0L;
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                var since = System.Diagnostics.Stopwatch.GetElapsedTime(computed);
                if (since < MinSpacing)
                {
                    await Task.Delay(MinSpacing - since, stoppingToken);
                }

                computed = System.Diagnostics.Stopwatch.GetTimestamp();
                var services = await registry.ListAsync(stoppingToken);
                var update = MeshRegistry.ToUpdate(services);
                // A change in who may call a service is a change too, though nodes get it only in their own envelope.
                var clients = new MeshUpdate();
                foreach (var service in services)
                {
                    var names = new NodeNames();
                    names.Names.Add(service.Clients);
                    clients.Clients[service.Name] = names;
                }

                var bytes = (byte[])[.. update.ToByteArray(), .. clients.ToByteArray()];
                if (!bytes.AsSpan().SequenceEqual(last))
                {
                    last = bytes;
                    long version;
                    lock (_lock)
                    {
                        _current = (_current.Version + 1, update, services);
                        _endpointNodes = services.SelectMany(s => s.Endpoints).Select(e => e.Node).ToHashSet(StringComparer.Ordinal);
                        version = _current.Version;
                    }

                    _versions.Publish(version);
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
