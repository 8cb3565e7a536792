using System.Net.Sockets;
using Outpost.Protocol;

namespace Outpost.Agent.Mesh;

/// <summary>Bytes between a local socket and a wire, both ways, until both sides are done.</summary>
internal static class WirePump
{
    /// <summary>
    /// Each direction ends at its source's end with a half-close (FIN on the socket, eof on the
    /// wire); a failure in one ends the other. Then waits for the server to end the call: ending it
    /// here first would reset the stream and lose the bytes the server has not read yet.
    /// </summary>
    public static async Task RunAsync(Socket socket, WireStream wire, CancellationToken cancellationToken)
    {
        await using (var local = new NetworkStream(socket, ownsSocket: false))
        {
            using var both = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            var up = CopyAsync(local, wire, () => wire.ShutdownWriteAsync(both.Token), both.Token);
            var down = CopyAsync(wire, local, () =>
            {
                socket.Shutdown(SocketShutdown.Send);
                return Task.CompletedTask;
            }, both.Token);
            var first = await Task.WhenAny(up, down);
            if (!first.IsCompletedSuccessfully)
            {
                await both.CancelAsync();
            }

            await Task.WhenAll(up, down);
        }

        using var linger = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        linger.CancelAfter(TimeSpan.FromSeconds(30));
        await wire.WaitForCloseAsync(linger.Token);
    }

    private static async Task CopyAsync(Stream source, Stream destination, Func<Task> halfClose, CancellationToken cancellationToken)
    {
        var buffer = new byte[32 * 1024];
        int read;
        while ((read = await source.ReadAsync(buffer, cancellationToken)) > 0)
        {
            await destination.WriteAsync(buffer.AsMemory(0, read), cancellationToken);
        }

        await halfClose();
    }
}
