using System.Buffers;
using System.Collections.Concurrent;
using System.Net;
using System.Net.Security;
using System.Security.Authentication;
using System.Net.Sockets;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Logging;
using Outpost.Agent.Hosting;
using Outpost.Agent.Sync;
using Outpost.Core.Net;
using Outpost.Core.Security;

namespace Outpost.Agent.Mesh;

/// <summary>
/// Direct wires between nodes of one site, with no server in between: the dialling node opens
/// TLS to the endpoint's advertised address, both sides presenting their node certificates and
/// each checking the other's against the fleet CA and the node name it expects; then it writes
/// <c>dial SERVICE\n</c>. The endpoint answers <c>ok\n</c> when an app of its own serves the
/// service (and the rest of the stream is HTTP for that app) or <c>no REASON\n</c> and closes,
/// and the dialler tries the next endpoint. Nothing here needs the server: with the last
/// registry a node holds, same-site wires keep working while the cloud is away.
/// </summary>
public sealed partial class MeshPeers(AgentOptions options, NodeCredentials credentials, ILogger<MeshPeers> logger)
{
    /// <summary>How long a dial may take to connect and finish its handshake before the next endpoint is tried.</summary>
    public static readonly TimeSpan ConnectTimeout = TimeSpan.FromSeconds(1);

    /// <summary>How long a node that could not be dialled is passed over: doubled with each failure in a row, up to <see cref="MaxDownFor"/>.</summary>
    public static readonly TimeSpan DownFor = TimeSpan.FromSeconds(2);

    /// <summary>The longest a node that keeps failing is passed over before it is tried again.</summary>
    public static readonly TimeSpan MaxDownFor = TimeSpan.FromSeconds(30);

    /// <summary>How often each watched same-site node is probed (NSM probes a wire every 200 ms).</summary>
    public static readonly TimeSpan ProbeInterval = TimeSpan.FromMilliseconds(250);

    /// <summary>How long a probe may go unanswered before the node is passed over.</summary>
    public static readonly TimeSpan ProbeTimeout = TimeSpan.FromMilliseconds(750);

    private const int MaxLine = 256;
    private static readonly byte[] Ok = "ok\n"u8.ToArray();
    private static readonly byte[] PingLine = "ping\n"u8.ToArray();
    private static readonly byte[] Pong = "pong\n"u8.ToArray();
    private readonly ConcurrentDictionary<string, bool> _probes = new(StringComparer.Ordinal);
    private long _probesMissed;

    private readonly ConcurrentDictionary<string, (long Until, int Failures)> _down = new(StringComparer.Ordinal);
    private readonly TaskCompletionSource<string?> _advertised = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private (string Thumbprint, TrustBundle Trust)? _nodeTrust;
    private long _dialed;
    private long _dialFailed;
    private long _accepted;
    private long _refused;

    public long Dialed => Interlocked.Read(ref _dialed);

    public long DialFailed => Interlocked.Read(ref _dialFailed);

    public long Accepted => Interlocked.Read(ref _accepted);

    public long Refused => Interlocked.Read(ref _refused);

    /// <summary>What this node advertises for direct wires once its listener is bound; null when it takes none.</summary>
    public Task<string?> Advertised => _advertised.Task;

    /// <summary>The listener to bind, or null when direct wires are off (or the server is plain http: no node certificates).</summary>
    public static IPEndPoint? ListenEndpoint(AgentOptions options, IPEndPoint gateway)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(gateway);
        if (options.MeshListen == "off" || options.ServerUrl.StartsWith("http:", StringComparison.OrdinalIgnoreCase))
        {
            return null;
        }

        return options.MeshListen is { } listen ? Core.Api.ListenAddress.Parse(listen) : new IPEndPoint(gateway.Address, 0);
    }

    /// <summary>The listener is up at <paramref name="bound"/> (null: there is none): work out the address to advertise.</summary>
    public void SetBound(IPEndPoint? bound)
    {
        if (bound is null)
        {
            _advertised.TrySetResult(null);
            return;
        }

        if (options.MeshAdvertise is { } advertise)
        {
            _advertised.TrySetResult(advertise);
            return;
        }

        var address = bound.Address;
        if (address.Equals(IPAddress.Any) || address.Equals(IPAddress.IPv6Any))
        {
            // A wildcard bind: the address this host uses toward the server is the one its site can reach.
            address = LocalAddressToward(new Uri(options.ServerUrl)) ?? IPAddress.Loopback;
        }

        _advertised.TrySetResult(new IPEndPoint(address, bound.Port).ToString());
    }

    /// <summary>The local address the kernel would use to reach <paramref name="server"/> (a connected UDP socket sends nothing).</summary>
    private static IPAddress? LocalAddressToward(Uri server)
    {
        try
        {
            var target = IPAddress.TryParse(server.Host.Trim('[', ']'), out var ip) ? ip : Dns.GetHostAddresses(server.Host).FirstOrDefault();
            if (target is null)
            {
                return null;
            }

            using var socket = new Socket(target.AddressFamily, SocketType.Dgram, ProtocolType.Udp);
            socket.Connect(target, server.Port);
            return (socket.LocalEndPoint as IPEndPoint)?.Address;
        }
        catch (SocketException)
        {
            return null;
        }
    }

    /// <summary>HOST:PORT, the host a name or an IP address (v6 in brackets).</summary>
    public static bool TryParseAddress(string text, out DnsEndPoint? endpoint)
    {
        endpoint = null;
        var colon = text?.LastIndexOf(':') ?? -1;
        if (colon <= 0 || !int.TryParse(text![(colon + 1)..], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var port) || port is < 1 or > 65535)
        {
            return false;
        }

        var host = text[..colon].Trim('[', ']');
        if (host.Length == 0 || (!IPAddress.TryParse(host, out _) && Uri.CheckHostName(host) != UriHostNameType.Dns))
        {
            return false;
        }

        endpoint = new DnsEndPoint(host, port);
        return true;
    }

    /// <summary>True while <paramref name="node"/> failed a dial recently, or fails its probes: new wires go elsewhere.</summary>
    public bool IsDown(string node) =>
        (_probes.TryGetValue(node, out var answering) && !answering)
        || (_down.TryGetValue(node, out var down) && System.Diagnostics.Stopwatch.GetTimestamp() < down.Until);

    /// <summary>The nodes probed now, each with whether it answers.</summary>
    public IEnumerable<(string Node, bool Answering)> Probed =>
        _probes.ToArray().OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => (p.Key, p.Value));

    /// <summary>Times a probed node went from answering to failing its probes.</summary>
    public long ProbesMissed => Interlocked.Read(ref _probesMissed);

    /// <summary>
    /// A direct wire to app of service <paramref name="service"/> on <paramref name="node"/> at
    /// <paramref name="address"/>. Throws <see cref="MeshUnavailableException"/> when the node
    /// cannot be reached, is not the node it should be, or serves no such endpoint; the node is
    /// then passed over for <see cref="DownFor"/>, longer after each failure in a row.
    /// </summary>
    public async Task<MeshConnection> DialAsync(string node, string address, string service, CancellationToken cancellationToken)
    {
        try
        {
            var connection = await ConnectAsync(node, address, service, cancellationToken);
            _down.TryRemove(node, out _);
            Interlocked.Increment(ref _dialed);
            return connection;
        }
        catch (Exception ex) when (ex is SocketException or IOException or AuthenticationException or OperationCanceledException or MeshUnavailableException && !cancellationToken.IsCancellationRequested)
        {
            Interlocked.Increment(ref _dialFailed);
            // A hung node costs a dial its connect timeout: after each failure in a row it is tried half as often.
            var failures = _down.TryGetValue(node, out var down) ? down.Failures + 1 : 1;
            var wait = TimeSpan.FromTicks(Math.Min(MaxDownFor.Ticks, DownFor.Ticks << Math.Min(failures - 1, 8)));
            _down[node] = (System.Diagnostics.Stopwatch.GetTimestamp() + (long)(wait.TotalSeconds * System.Diagnostics.Stopwatch.Frequency), failures);
            var reason = ex is OperationCanceledException ? $"no answer within {ConnectTimeout.TotalMilliseconds:F0} ms" : ex.Message;
            LogDialFailed(logger, node, address, service, reason);
            throw new MeshUnavailableException($"node {node} at {address}: {reason}");
        }
    }

    private async Task<MeshConnection> ConnectAsync(string node, string address, string service, CancellationToken cancellationToken)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(ConnectTimeout);
        var tls = await OpenTlsAsync(node, address, timeout.Token);
        try
        {
            await tls.WriteAsync(Encoding.ASCII.GetBytes($"dial {service}\n"), timeout.Token);
            var answer = await ReadLineAsync(tls, timeout.Token);
            if (answer != "ok")
            {
                throw new MeshUnavailableException(answer?.StartsWith("no ", StringComparison.Ordinal) == true ? answer[3..] : "the node closed the connection");
            }

            return new MeshConnection(tls, MeshRoute.Direct, node, () => tls.ShutdownAsync());
        }
        catch
        {
            await tls.DisposeAsync();
            throw;
        }
    }

    /// <summary>Mutual TLS with <paramref name="node"/> at <paramref name="address"/>, each side checking the other's node certificate.</summary>
    private async Task<SslStream> OpenTlsAsync(string node, string address, CancellationToken cancellationToken)
    {
        var certificate = credentials.Current ?? throw new MeshUnavailableException("this node holds no certificate yet (it has not joined over TLS)");
        var trust = NodeTrust(certificate) ?? throw new MeshUnavailableException("this node holds no fleet CA to check peers with");
        if (!TryParseAddress(address, out var endpoint))
        {
            throw new MeshUnavailableException($"'{address}' is not HOST:PORT");
        }

        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        SslStream? tls = null;
        string? rejected = null;
        try
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeout.CancelAfter(ConnectTimeout);
            await socket.ConnectAsync(endpoint!, timeout.Token);
            tls = new SslStream(new NetworkStream(socket, ownsSocket: true));
            await tls.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
            {
                TargetHost = node,
                ClientCertificateContext = SslStreamCertificateContext.Create(certificate, null),
                RemoteCertificateValidationCallback = (_, presented, chain, _) => (rejected = Check(trust, presented, chain, node)) is null,
            }, timeout.Token);
            TlsIdleBuffers.Release(tls); // a wire waiting on its ends holds no OpenSSL record buffers
            return tls;
        }
        catch (AuthenticationException ex)
        {
            tls?.Dispose();
            socket.Dispose();
            throw new MeshUnavailableException($"TLS with the node failed: {rejected ?? ex.Message}");
        }
        catch
        {
            tls?.Dispose();
            socket.Dispose();
            throw;
        }
    }

    /// <summary>Null when <paramref name="presented"/> is a node certificate of this fleet for <paramref name="node"/> (any node when null), or why not.</summary>
    private static string? Check(TrustBundle trust, X509Certificate? presented, X509Chain? chain, string? node)
    {
        if (presented is null)
        {
            return "no certificate";
        }

        var certificate = presented as X509Certificate2 ?? X509CertificateLoader.LoadCertificate(presented.GetRawCertData());
        if (trust.Validate(certificate, chain, TrustBundle.ClientAuthOid) is { } problem)
        {
            return $"a certificate of another CA ({problem})";
        }

        var name = certificate.GetNameInfo(X509NameType.SimpleName, forIssuer: false);
        return node is null || name == node ? null : $"the certificate of node '{name}', not '{node}'";
    }

    /// <summary>
    /// What node certificates must chain to: the certificate in the kept CA bundle that issued this
    /// node's own (the bundle may also hold roots of a brought serving certificate, which sign no nodes).
    /// </summary>
    private TrustBundle? NodeTrust(X509Certificate2 own)
    {
        if (_nodeTrust is { } cached && cached.Thumbprint == own.Thumbprint)
        {
            return cached.Trust;
        }

        var path = Path.Combine(options.DataDir, "ca.crt");
        if (!File.Exists(path))
        {
            return null;
        }

        var issuers = TrustBundle.FromPem(File.ReadAllText(path)).Certificates.Where(c => c.SubjectName.RawData.AsSpan().SequenceEqual(own.IssuerName.RawData)).ToList();
        if (issuers.Count == 0)
        {
            return null;
        }

        var trust = TrustBundle.FromCertificates(issuers);
        _nodeTrust = (own.Thumbprint, trust);
        return trust;
    }

    /// <summary>Checks a dialling node's certificate for the listener: the fleet's CA, a node certificate.</summary>
    public bool ValidateClient(X509Certificate2 certificate, X509Chain? chain)
    {
        var own = credentials.Current;
        var trust = own is null ? null : NodeTrust(own);
        var problem = trust is null ? "this node holds no fleet CA yet" : Check(trust, certificate, chain, node: null);
        if (problem is not null)
        {
            Interlocked.Increment(ref _refused);
            LogPeerRefused(logger, certificate?.Subject ?? "(none)", problem);
        }

        return problem is null;
    }

    /// <summary>
    /// Connection middleware after TLS on the direct-wire listener: reads <c>dial SERVICE</c>,
    /// answers, and hands the connection to HTTP for the app that serves the service here.
    /// <paramref name="servingApp"/> names that app, or says why there is none.
    /// </summary>
    public ConnectionDelegate Accept(ConnectionDelegate next, Func<string, string, (string? App, string? Refusal)> servingApp)
    {
        ArgumentNullException.ThrowIfNull(servingApp);
        return async connection =>
        {
            var peer = connection.Features.Get<ITlsConnectionFeature>()?.ClientCertificate?.GetNameInfo(X509NameType.SimpleName, forIssuer: false);
            if (peer is null)
            {
                Interlocked.Increment(ref _refused);
                LogPeerRefused(logger, "(none)", "no certificate");
                return;
            }

            var line = await MeshListener.ReadLineAsync(connection.Transport.Input, MaxLine, connection.ConnectionClosed);
            if (line == "ping")
            {
                await EchoProbesAsync(connection);
                return;
            }

            if (line is null || !line.StartsWith("dial ", StringComparison.Ordinal))
            {
                Interlocked.Increment(ref _refused);
                return;
            }

            var service = line[5..];
            var (app, refusal) = servingApp(peer, service);
            if (app is null)
            {
                Interlocked.Increment(ref _refused);
                LogDialRefused(logger, peer, service, refusal ?? "");
                await connection.Transport.Output.WriteAsync(Encoding.UTF8.GetBytes($"no {refusal}\n"), connection.ConnectionClosed);
                return;
            }

            Interlocked.Increment(ref _accepted);
            await connection.Transport.Output.WriteAsync(Ok, connection.ConnectionClosed);
            MeshListener.SetTargetApp(connection, app);
            await next(connection);
        };
    }

    /// <summary>A peer's probe connection: <c>pong</c> for each <c>ping</c>, until it closes.</summary>
    private static async Task EchoProbesAsync(ConnectionContext connection)
    {
        try
        {
            var line = "ping";
            while (line == "ping")
            {
                await connection.Transport.Output.WriteAsync(Pong, connection.ConnectionClosed);
                line = await MeshListener.ReadLineAsync(connection.Transport.Input, MaxLine, connection.ConnectionClosed);
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException or ConnectionResetException or ObjectDisposedException)
        {
            // The prober went away.
        }
    }

    /// <summary>
    /// NSM-style liveness of the same-site nodes this one may dial, whatever the traffic: one
    /// probe connection to each (mutual TLS, as a dial), a <c>ping</c> every
    /// <see cref="ProbeInterval"/>. A node that leaves one unanswered for <see cref="ProbeTimeout"/>,
    /// or whose connection fails, is passed over by new wires until it answers again; so a hung or
    /// dead endpoint costs no wire its connect timeout. <paramref name="targets"/> says, each round,
    /// which nodes to watch and where (node, HOST:PORT).
    /// </summary>
    public async Task RunProbesAsync(Func<IReadOnlyCollection<(string Node, string Address)>> targets, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(targets);
        var running = new Dictionary<string, (string Address, CancellationTokenSource Stop, Task Loop)>(StringComparer.Ordinal);
        using var timer = new PeriodicTimer(ProbeInterval);
        try
        {
            do
            {
                // No certificate yet (not joined, or a plain-http fleet): there is nothing to probe with.
                var wanted = credentials.Current is null ? [] : targets().ToDictionary(t => t.Node, t => t.Address, StringComparer.Ordinal);
                foreach (var (node, probe) in running.Where(r => !wanted.TryGetValue(r.Key, out var address) || address != r.Value.Address).ToList())
                {
                    await probe.Stop.CancelAsync();
                    await probe.Loop;
                    probe.Stop.Dispose();
                    running.Remove(node);
                    _probes.TryRemove(node, out _);
                }

                foreach (var (node, address) in wanted.Where(w => !running.ContainsKey(w.Key)))
                {
                    var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                    running[node] = (address, stop, ProbeLoopAsync(node, address, stop.Token));
                }
            }
            while (await timer.WaitForNextTickAsync(cancellationToken));
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            // Stopping.
        }
        finally
        {
            foreach (var probe in running.Values)
            {
                await probe.Stop.CancelAsync();
                await probe.Loop;
                probe.Stop.Dispose();
            }
        }
    }

    /// <summary>Probes one node until stopped, reconnecting after each failure.</summary>
    private async Task ProbeLoopAsync(string node, string address, CancellationToken cancellationToken)
    {
        var line = new byte[Pong.Length];
        while (!cancellationToken.IsCancellationRequested)
        {
            try
            {
                await using var tls = await OpenTlsAsync(node, address, cancellationToken);
                while (true)
                {
                    var sent = System.Diagnostics.Stopwatch.GetTimestamp();
                    using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                    timeout.CancelAfter(ProbeTimeout);
                    await tls.WriteAsync(PingLine, timeout.Token);
                    await tls.ReadExactlyAsync(line, timeout.Token);
                    if (!line.AsSpan().SequenceEqual(Pong))
                    {
                        throw new IOException("the node answered a probe with something else");
                    }

                    Answered(node);
                    var wait = ProbeInterval - System.Diagnostics.Stopwatch.GetElapsedTime(sent);
                    if (wait > TimeSpan.Zero)
                    {
                        await Task.Delay(wait, cancellationToken);
                    }
                }
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex) when (ex is SocketException or IOException or AuthenticationException or OperationCanceledException or MeshUnavailableException or ObjectDisposedException)
            {
                Silent(node, ex is OperationCanceledException ? $"no answer within {ProbeTimeout.TotalMilliseconds:F0} ms" : ex.Message);
            }

            try
            {
                await Task.Delay(ProbeInterval, cancellationToken);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    private void Answered(string node)
    {
        var known = _probes.TryGetValue(node, out var was);
        if (known && was)
        {
            return;
        }

        _probes[node] = true;
        // A node that answers probes is reachable again: no need to wait out a dial failure's pass-over.
        _down.TryRemove(node, out _);
        if (known)
        {
            LogPeerAnswering(logger, node);
        }
    }

    private void Silent(string node, string reason)
    {
        if (_probes.TryGetValue(node, out var was) && !was)
        {
            return;
        }

        _probes[node] = false;
        Interlocked.Increment(ref _probesMissed);
        LogPeerSilent(logger, node, reason);
    }

    /// <summary>One line (without its newline) read a byte at a time, so nothing after it is consumed; null at the end of the stream or past <see cref="MaxLine"/>.</summary>
    private static async Task<string?> ReadLineAsync(Stream stream, CancellationToken cancellationToken)
    {
        var line = new byte[MaxLine];
        for (var i = 0; i < line.Length; i++)
        {
            if (await stream.ReadAsync(line.AsMemory(i, 1), cancellationToken) == 0)
            {
                return null;
            }

            if (line[i] == '\n')
            {
                return Encoding.UTF8.GetString(line, 0, i);
            }
        }

        return null;
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "A direct wire to node {Node} at {Address} for service {Service} failed ({Reason}): trying another endpoint")]
    private static partial void LogDialFailed(ILogger logger, string node, string address, string service, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Node {Node} of this site fails its probes ({Reason}): new wires go elsewhere until it answers")]
    private static partial void LogPeerSilent(ILogger logger, string node, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "Node {Node} of this site answers its probes again")]
    private static partial void LogPeerAnswering(ILogger logger, string node);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Refused a direct wire from a peer presenting {Subject}: {Reason}")]
    private static partial void LogPeerRefused(ILogger logger, string subject, string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Refused node {Peer} a direct wire to service {Service}: {Reason}")]
    private static partial void LogDialRefused(ILogger logger, string peer, string service, string reason);
}
