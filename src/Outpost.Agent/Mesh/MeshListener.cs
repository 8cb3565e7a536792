using System.Buffers;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Connections.Features;
using Microsoft.AspNetCore.Http;

namespace Outpost.Agent.Mesh;

/// <summary>
/// Where wires that reach this node as an endpoint of a service come in: a Unix socket of the
/// agent's (no TCP port, so nothing off the node reaches it), served by the gateway's Kestrel.
/// The node's end of the wire writes one line first, <c>app NAME\n</c>, naming the app that
/// answers; the rest of the stream is plain HTTP/1.1 for that app, every path of it.
/// </summary>
public static class MeshListener
{
    private const string AppItem = "outpost.mesh.app";
    private const int MaxPreamble = 128;

    /// <summary>The socket's path: in the data dir, or under the temp dir when that path is too long for a socket.</summary>
    public static string SocketPath(string dataDir)
    {
        var path = Path.Combine(Path.GetFullPath(dataDir), "mesh.sock");
        if (Encoding.UTF8.GetByteCount(path) <= 100)
        {
            return path;
        }

        var hash = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(Encoding.UTF8.GetBytes(path)))[..16];
        return Path.Combine(Path.GetTempPath(), $"outpost-mesh-{hash}.sock");
    }

    /// <summary>The first line of a wire to app <paramref name="app"/>.</summary>
    public static byte[] Preamble(string app) => Encoding.ASCII.GetBytes($"app {app}\n");

    /// <summary>A connection to app <paramref name="app"/> through this node's mesh socket, the preamble sent.</summary>
    public static Task<Socket> ConnectToAppAsync(string dataDir, string app, CancellationToken cancellationToken) =>
        ConnectAsync(new UnixDomainSocketEndPoint(SocketPath(dataDir)), Preamble(app), cancellationToken);

    /// <summary>How often a connect to a full Unix socket backlog is tried again (waits growing by 5 ms: ~5 s in all).</summary>
    private const int ConnectRetries = 45;

    /// <summary>A connected socket (TCP with no delay, or Unix), <paramref name="preamble"/> sent first if given; disposed if anything fails.</summary>
    public static async Task<Socket> ConnectAsync(EndPoint endpoint, byte[]? preamble, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(endpoint);
        for (var attempt = 0; ; attempt++)
        {
            var socket = endpoint is UnixDomainSocketEndPoint
                ? new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified)
                : new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            try
            {
                await socket.ConnectAsync(endpoint, cancellationToken);
                if (preamble is not null)
                {
                    await socket.SendAsync(preamble, cancellationToken);
                }

                return socket;
            }
            catch (SocketException ex) when (ex.SocketErrorCode == SocketError.WouldBlock && endpoint is UnixDomainSocketEndPoint && attempt < ConnectRetries)
            {
                // A Unix socket's backlog is full (a burst of wires): unlike TCP, the kernel says so at
                // once rather than retrying; Kestrel drains it in moments. A failed socket is not reused.
                socket.Dispose();
                await Task.Delay(5 * (attempt + 1), cancellationToken);
            }
            catch
            {
                socket.Dispose();
                throw;
            }
        }
    }

    /// <summary>The target of wires the server opens for `outpost exec`: not a DNS label, so no app can be named so.</summary>
    public const string ExecTarget = "!exec";

    /// <summary>The app a request's connection was opened for, or null for the gateway's own connections.</summary>
    public static string? TargetApp(HttpContext context) =>
        context?.Features.Get<IConnectionItemsFeature>()?.Items.TryGetValue(AppItem, out var app) == true ? app as string : null;

    /// <summary>Connection middleware: reads the preamble, remembers the app, and hands the rest to HTTP.</summary>
    public static ConnectionDelegate ReadPreamble(ConnectionDelegate next) => async connection =>
    {
        var line = await ReadLineAsync(connection.Transport.Input, MaxPreamble, connection.ConnectionClosed);
        if (line is null || !line.StartsWith("app ", StringComparison.Ordinal) || !Core.Manifests.ManifestValidator.IsDnsLabel(line[4..]))
        {
            return; // not a wire of ours: close
        }

        SetTargetApp(connection, line[4..]);
        await next(connection);
    };

    /// <summary>Requests on <paramref name="connection"/> go to app <paramref name="app"/>.</summary>
    public static void SetTargetApp(ConnectionContext connection, string app)
    {
        ArgumentNullException.ThrowIfNull(connection);
        connection.Items[AppItem] = app;
    }

    /// <summary>The first line of a connection (without its newline), consumed and nothing after it; null when it ends (or closes) first or the line is longer than <paramref name="max"/>.</summary>
    public static async Task<string?> ReadLineAsync(PipeReader input, int max, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(input);
        while (true)
        {
            ReadResult result;
            try
            {
                result = await input.ReadAsync(cancellationToken);
            }
            catch (OperationCanceledException)
            {
                return null; // the connection closed before its first line
            }

            var buffer = result.Buffer;
            if (buffer.PositionOf((byte)'\n') is { } end)
            {
                var line = Encoding.UTF8.GetString(buffer.Slice(0, end).ToArray());
                input.AdvanceTo(buffer.GetPosition(1, end));
                return line;
            }

            if (buffer.Length > max || result.IsCompleted)
            {
                input.AdvanceTo(buffer.End);
                return null;
            }

            input.AdvanceTo(buffer.Start, buffer.End);
        }
    }
}
