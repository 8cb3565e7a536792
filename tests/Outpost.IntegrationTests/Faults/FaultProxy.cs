using System.Net;
using System.Net.Sockets;

namespace Outpost.IntegrationTests.Faults;

/// <summary>What the proxy does to traffic; switchable while connections are open.</summary>
public enum FaultMode
{
    /// <summary>Bytes flow both ways (subject to latency and bandwidth).</summary>
    Pass,

    /// <summary>Every open connection is reset, and new ones are reset on accept.</summary>
    Reset,

    /// <summary>Connections stay open but nothing is forwarded either way: a dead link that looks alive.</summary>
    Blackhole,
}

/// <summary>
/// A TCP proxy on 127.0.0.1:0 between agents and the server, for tests of what crosses a bad
/// network: pass-through, reset, blackhole, cut after N bytes, added latency and a bandwidth
/// cap, all switchable at run time, with byte counters per direction.
/// </summary>
public sealed class FaultProxy : IAsyncDisposable
{
    private readonly TcpListener _listener;
    private readonly IPEndPoint _target;
    private readonly CancellationTokenSource _stop = new();
    private readonly List<(TcpClient Client, TcpClient Upstream)> _connections = [];
    private readonly Lock _lock = new();
    private readonly Task _accepting;
    private long _upBytes;
    private long _downBytes;
    private long _cutAfter = long.MaxValue;

    public FaultProxy(int targetPort)
    {
        _target = new IPEndPoint(IPAddress.Loopback, targetPort);
        _listener = new TcpListener(IPAddress.Loopback, 0);
        _listener.Start();
        _accepting = Task.Run(AcceptAsync);
    }

    public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

    /// <summary>The proxied server's URL (the server speaks TLS unless run with --insecure-http).</summary>
    public string Url => $"{Scheme}://127.0.0.1:{Port}";

    public string Scheme { get; init; } = "https";

    private volatile FaultMode _mode = FaultMode.Pass;

    public FaultMode Mode
    {
        get => _mode;
        set => _mode = value;
    }

    /// <summary>Added one-way delay per forwarded chunk.</summary>
    public TimeSpan Latency { get; set; }

    /// <summary>Bytes per second per direction per connection; 0 is unlimited.</summary>
    public long BandwidthBytesPerSecond { get; set; }

    /// <summary>Bytes forwarded agent → server.</summary>
    public long UpBytes => Interlocked.Read(ref _upBytes);

    /// <summary>Bytes forwarded server → agent.</summary>
    public long DownBytes => Interlocked.Read(ref _downBytes);

    public int OpenConnections
    {
        get
        {
            lock (_lock)
            {
                return _connections.Count;
            }
        }
    }

    /// <summary>Closes every connection once this many more bytes have crossed (in either direction): a cut mid-frame.</summary>
    public void CutAfter(long bytes) => Interlocked.Exchange(ref _cutAfter, UpBytes + DownBytes + bytes);

    public void ResetCounters()
    {
        Interlocked.Exchange(ref _upBytes, 0);
        Interlocked.Exchange(ref _downBytes, 0);
    }

    /// <summary>Resets every open connection now (RST, not FIN).</summary>
    public void ResetAll()
    {
        lock (_lock)
        {
            foreach (var (client, upstream) in _connections)
            {
                Abort(client);
                Abort(upstream);
            }

            _connections.Clear();
        }
    }

    private async Task AcceptAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            TcpClient client;
            try
            {
                client = await _listener.AcceptTcpClientAsync(_stop.Token);
            }
            catch (Exception ex) when (ex is OperationCanceledException or ObjectDisposedException or SocketException)
            {
                return;
            }

            if (Mode == FaultMode.Reset)
            {
                Abort(client);
                continue;
            }

            _ = Task.Run(() => ServeAsync(client));
        }
    }

    private async Task ServeAsync(TcpClient client)
    {
        var upstream = new TcpClient();
        try
        {
            await upstream.ConnectAsync(_target, _stop.Token);
        }
        catch (Exception ex) when (ex is SocketException or OperationCanceledException)
        {
            Abort(client);
            upstream.Dispose();
            return;
        }

        lock (_lock)
        {
            _connections.Add((client, upstream));
        }

        using var done = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
        var up = PumpAsync(client.GetStream(), upstream.GetStream(), true, done.Token);
        var down = PumpAsync(upstream.GetStream(), client.GetStream(), false, done.Token);
        await Task.WhenAny(up, down);
        await done.CancelAsync();
        lock (_lock)
        {
            _connections.Remove((client, upstream));
        }

        client.Dispose();
        upstream.Dispose();
    }

    private async Task PumpAsync(NetworkStream from, NetworkStream to, bool upward, CancellationToken ct)
    {
        var buffer = new byte[16 * 1024];
        try
        {
            while (!ct.IsCancellationRequested)
            {
                var n = await from.ReadAsync(buffer, ct);
                if (n == 0)
                {
                    return;
                }

                while (Mode == FaultMode.Blackhole && !ct.IsCancellationRequested)
                {
                    await Task.Delay(50, ct); // swallow: hold the bytes, forward nothing
                }

                if (Latency > TimeSpan.Zero)
                {
                    await Task.Delay(Latency, ct);
                }

                var offset = 0;
                while (offset < n)
                {
                    var chunk = n - offset;
                    var rate = BandwidthBytesPerSecond;
                    if (rate > 0)
                    {
                        chunk = (int)Math.Min(chunk, Math.Max(1, rate / 20));
                        await Task.Delay(TimeSpan.FromSeconds((double)chunk / rate), ct);
                    }

                    var total = Interlocked.Add(ref upward ? ref _upBytes : ref _downBytes, chunk) + (upward ? DownBytes : UpBytes);
                    if (total >= Interlocked.Read(ref _cutAfter))
                    {
                        Interlocked.Exchange(ref _cutAfter, long.MaxValue);
                        ResetAll();
                        return;
                    }

                    await to.WriteAsync(buffer.AsMemory(offset, chunk), ct);
                    offset += chunk;
                }
            }
        }
        catch (Exception ex) when (ex is IOException or OperationCanceledException or ObjectDisposedException or SocketException)
        {
        }
    }

    private static void Abort(TcpClient client)
    {
        try
        {
            client.Client.LingerState = new LingerOption(true, 0); // RST on close
            client.Close();
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Stop();
        ResetAll();
        await _accepting;
        _stop.Dispose();
    }
}
