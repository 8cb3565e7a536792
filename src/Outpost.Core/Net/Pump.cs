namespace Outpost.Core.Net;

/// <summary>
/// Bytes both ways between two ends of a connection (a socket, a wire, a tunnel): each direction
/// copies until its source ends and then half-closes its destination, so a protocol that ends
/// its request with a shutdown still gets its answer; a failure in one direction ends the other.
/// </summary>
public static class Pump
{
    /// <summary>The most one step of a copy moves.</summary>
    public const int ChunkBytes = 32 * 1024;

    /// <summary>
    /// Copies until <paramref name="source"/> ends, then calls <paramref name="halfClose"/>;
    /// <paramref name="flushEach"/> flushes after each piece (an interactive tunnel whose stream buffers).
    /// While the source is idle no buffer is held: each step first waits with a zero-byte read
    /// (sockets, TLS, wires and HTTP bodies support it; a stream that does not just returns) and
    /// only then rents a buffer from the pool, handing it back after the write, so ten thousand
    /// idle connections cost no 64 KB each.
    /// </summary>
    public static async Task CopyAsync(Stream source, Stream destination, Func<Task> halfClose, bool flushEach, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(destination);
        ArgumentNullException.ThrowIfNull(halfClose);
        while (true)
        {
#pragma warning disable CA2022 // a zero-byte read reads nothing: it waits for data
            await source.ReadAsync(Memory<byte>.Empty, cancellationToken);
#pragma warning restore CA2022
            var buffer = System.Buffers.ArrayPool<byte>.Shared.Rent(ChunkBytes);
            try
            {
                var read = await source.ReadAsync(buffer.AsMemory(0, ChunkBytes), cancellationToken);
                if (read == 0)
                {
                    break;
                }

                await destination.WriteAsync(buffer.AsMemory(0, read), cancellationToken);
                if (flushEach)
                {
                    await destination.FlushAsync(cancellationToken);
                }
            }
            finally
            {
                System.Buffers.ArrayPool<byte>.Shared.Return(buffer);
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
