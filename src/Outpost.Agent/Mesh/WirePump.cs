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
            await Core.Net.Pump.BothAsync(
                token => Core.Net.Pump.CopyAsync(local, wire, () => wire.ShutdownWriteAsync(token), flushEach: false, token),
                token => Core.Net.Pump.CopyAsync(wire, local, () =>
                {
                    socket.Shutdown(SocketShutdown.Send);
                    return Task.CompletedTask;
                }, flushEach: false, token),
                cancellationToken);
        }

        using var linger = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        linger.CancelAfter(TimeSpan.FromSeconds(30));
        await wire.WaitForCloseAsync(linger.Token);
    }
}
