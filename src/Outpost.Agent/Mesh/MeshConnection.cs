namespace Outpost.Agent.Mesh;

/// <summary>How a connection to a service was carried.</summary>
public enum MeshRoute
{
    /// <summary>This node serves it: straight into the app, no wire.</summary>
    Local,

    /// <summary>A node of the same site serves it: a TLS connection to that node, no server in between.</summary>
    Direct,

    /// <summary>Through the server, on this node's own connection to it.</summary>
    Relayed,
}

/// <summary>
/// One open connection to an endpoint of a service, however it is carried: a byte stream whose
/// write side can be closed alone (so a request ended by a shutdown still gets its answer), and
/// which owns everything under it, so disposing the stream ends the connection.
/// </summary>
public sealed class MeshConnection(Stream stream, MeshRoute route, string node, Func<Task> shutdownWrite, Func<CancellationToken, Task>? drain = null) : IAsyncDisposable
{
    public Stream Stream { get; } = stream;

    public MeshRoute Route { get; } = route;

    /// <summary>The node whose endpoint answers (for a relayed wire, the server picks it: empty).</summary>
    public string Node { get; } = node;

    /// <summary>Ends this side's writing; reading goes on.</summary>
    public Task ShutdownWriteAsync() => shutdownWrite();

    /// <summary>Waits, within <paramref name="cancellationToken"/>, until the far side is done too (a relayed wire ends its call only then).</summary>
    public Task DrainAsync(CancellationToken cancellationToken) => drain?.Invoke(cancellationToken) ?? Task.CompletedTask;

    /// <summary>Ends the connection: its stream owns all of it (socket, TLS, or the wire's call).</summary>
    public ValueTask DisposeAsync() => Stream.DisposeAsync();
}

/// <summary>No endpoint of the service could be reached; the message says why.</summary>
public sealed class MeshUnavailableException(string message) : Exception(message);
