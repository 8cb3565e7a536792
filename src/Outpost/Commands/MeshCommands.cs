using System.CommandLine;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Outpost.Client;
using Outpost.Core.Manifests;

namespace Outpost.Commands;

/// <summary>The mesh from an operator's desk: port-forward into nodes behind NAT, through the server.</summary>
internal static class MeshCommands
{
    public static Command PortForward()
    {
        var target = new Argument<string>("target") { Description = "node/NAME (a port on the node's loopback) or svc/NAME (a service's endpoint)" };
        var ports = new Argument<string>("ports") { Description = "LOCAL:REMOTE for a node (LOCAL 0 picks a free port); LOCAL[:PORT] for a service" };
        var address = new Option<string>("--address") { Description = "The local address to listen on", DefaultValueFactory = _ => "127.0.0.1" };
        var command = new Command("port-forward", "Forward a local port to a node or a service through the server, as kubectl port-forward does; runs until Ctrl-C")
        {
            target, ports, address,
        };
        command.SetAction((result, ct) => ClientCommands.Run(async () =>
        {
            var (path, describe) = await ResolveAsync(result, result.GetValue(target)!, result.GetValue(ports)!, ct);
            var local = LocalPort(result.GetValue(ports)!);
            if (!IPAddress.TryParse(result.GetValue(address), out var ip))
            {
                throw new ManifestException($"--address '{result.GetValue(address)}' is not an IP address");
            }

            using var client = CommonOptions.Connect(result);
            using var listener = new TcpListener(ip, local);
            listener.Start();
            var bound = (IPEndPoint)listener.LocalEndpoint;
            Console.WriteLine($"Forwarding from {bound.Address}:{bound.Port} -> {describe}");
            var connection = 0;
            while (!ct.IsCancellationRequested)
            {
                Socket accepted;
                try
                {
                    accepted = await listener.AcceptSocketAsync(ct);
                }
                catch (OperationCanceledException)
                {
                    break;
                }

                var number = ++connection;
                _ = Task.Run(() => ForwardAsync(client, path, accepted, number, ct), CancellationToken.None);
            }

            return 0;
        }));
        return command;
    }

    /// <summary>The tunnel path for the target, and how the target is described to the user.</summary>
    private static async Task<(string Path, string Describe)> ResolveAsync(ParseResult result, string target, string ports, CancellationToken ct)
    {
        var slash = target.IndexOf('/', StringComparison.Ordinal);
        var kind = slash > 0 ? target[..slash] : "";
        var name = slash > 0 ? target[(slash + 1)..] : "";
        if (!ManifestValidator.IsDnsLabel(name))
        {
            throw new ManifestException($"'{target}' is not a target: write node/NAME or svc/NAME");
        }

        var parts = ports.Split(':');
        switch (kind)
        {
            case "node" or "nodes" or "no":
                if (parts.Length != 2 || !TryPort(parts[1], out var remote) || remote == 0)
                {
                    throw new ManifestException($"'{ports}': a node needs LOCAL:REMOTE, e.g. 8080:80 (REMOTE is a port on the node's loopback)");
                }

                return ($"proxy/tunnel/nodes/{name}/{remote.ToString(CultureInfo.InvariantCulture)}", $"node/{name}:{remote.ToString(CultureInfo.InvariantCulture)}");
            case "svc" or "service" or "services":
                using (var client = CommonOptions.Connect(result))
                {
                    var service = await client.GetAsync($"{Core.Resources.ResourceKind.NetworkService.CollectionPath}/{name}", ct);
                    var port = (int?)service["spec"]?["port"] ?? 0;
                    if (parts.Length == 2 && (!TryPort(parts[1], out var asked) || asked != port))
                    {
                        throw new ManifestException($"service '{name}' is exposed on port {port}, not {parts[1]}: write {parts[0]}:{port}, or {parts[0]}");
                    }

                    return ($"proxy/tunnel/services/{name}", $"svc/{name}:{port.ToString(CultureInfo.InvariantCulture)}");
                }

            default:
                throw new ManifestException($"'{target}' is not a target: write node/NAME or svc/NAME");
        }
    }

    private static int LocalPort(string ports)
    {
        var local = ports.Split(':')[0];
        return TryPort(local, out var port) ? port : throw new ManifestException($"'{local}' is not a local port (0 to 65535)");
    }

    private static bool TryPort(string text, out int port) =>
        int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out port) && port is >= 0 and <= 65535;

    /// <summary>One local connection, through its own tunnel, until both sides are done.</summary>
    private static async Task ForwardAsync(ApiClient client, string path, Socket socket, int number, CancellationToken ct)
    {
        using (socket)
        {
            try
            {
                await using var tunnel = await client.OpenTunnelAsync(path, ct);
                await using var local = new NetworkStream(socket, ownsSocket: false);
                await Core.Net.Pump.BothAsync(
                    token => Core.Net.Pump.CopyAsync(local, tunnel, async () => await tunnel.ShutdownWriteAsync(), flushEach: true, token),
                    token => Core.Net.Pump.CopyAsync(tunnel, local, () =>
                    {
                        socket.Shutdown(SocketShutdown.Send);
                        return Task.CompletedTask;
                    }, flushEach: false, token),
                    ct);
            }
            catch (ApiException ex)
            {
                await Console.Error.WriteLineAsync($"error: connection {number}: {ex.Message}");
            }
            catch (Exception ex) when (ex is IOException or SocketException or HttpRequestException or OperationCanceledException or ObjectDisposedException)
            {
                // The connection ended early on one side; the forward goes on.
            }
        }
    }
}
