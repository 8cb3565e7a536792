namespace Outpost.Core.Net;

/// <summary>
/// Bytes both ways between two ends of a connection (a socket, a wire, a tunnel): each direction
/// copies until its source ends and then half-closes its destination, so a protocol that ends
/// its request with a shutdown still gets its answer; a failure in one direction ends the other.
/// </summary>
public static class Pump
{
    /// <summary>
    /// Copies until <paramref name="source"/> ends, then calls <paramref name="halfClose"/>;
    /// <paramref name="flushEach"/> flushes after each piece (an interactive tunnel whose stream buffers).
    /// </summary>
    public static async Task CopyAsync(Stream source, Stream destination, Func<Task> halfClose, bool flushEach, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(destination);
        ArgumentNullException.ThrowIfNull(halfClose);
        var buffer = new byte[32 * 1024];
        int read;
        while ((read = await source.ReadAsync(buffer, cancellationToken)) > 0)
        {
            await destination.WriteAsync(buffer.AsMemory(0, read), cancellationToken);
            if (flushEach)
            {
                await destination.FlushAsync(cancellationToken);
            }
        }

        await halfClose();
    }

    /// <summary>Runs both directions until both are done; when one fails, the other is cancelled. Failures are rethrown.</summary>
    public static async Task BothAsync(Func<CancellationToken, Task> up, Func<CancellationToken, Task> down, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(up);
        ArgumentNullException.ThrowIfNull(down);
        using var both = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var a = up(both.Token);
        var b = down(both.Token);
        var first = await Task.WhenAny(a, b);
        if (!first.IsCompletedSuccessfully)
        {
            await both.CancelAsync();
        }

        await Task.WhenAll(a, b);
    }
}
