using System.Buffers.Binary;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Text;

namespace Outpost.Bench;

/// <summary>
/// Byte-level helpers for `bench/run.sh mesh`: a TCP sink that counts what each connection sends,
/// reports the count as it goes (every MiB) and, at the end of the stream, the total; a bulk
/// sender that measures MB/s to it; a connection-rate probe (connect, one byte, end of stream, the
/// count back, close); a writer whose reader stops; an open-loop latency probe; and a holder of
/// many idle connections.
/// </summary>
internal static class MeshBench
{
    /// <summary>
    /// A connection to the sink that opens with <c>outpost-bench stall SECONDS\n</c> is not read (so
    /// what is written to it backs up through every hop of its path) until a connection that opens
    /// with <c>outpost-bench resume\n</c> comes, or SECONDS pass; then it is counted as any other.
    /// </summary>
    private static readonly byte[] CommandPrefix = "outpost-bench "u8.ToArray();

    private static TaskCompletionSource s_resume = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public static async Task SinkAsync(int port)
    {
        using var listener = new TcpListener(IPAddress.Loopback, port);
        listener.Start();
        while (true)
        {
            var socket = await listener.AcceptSocketAsync();
            _ = Task.Run(async () =>
            {
                using (socket)
                {
                    var buffer = new byte[256 * 1024];
                    // A command can only open a connection: gather the first bytes until it is clear whether they are one.
                    var head = 0;
                    var read = 0;
                    string? command = null;
                    while ((read = await socket.ReceiveAsync(buffer.AsMemory(head))) > 0)
                    {
                        head += read;
                        if (TryReadCommand(buffer.AsSpan(0, head), out command))
                        {
                            break;
                        }
                    }

                    if (command == "resume")
                    {
                        Interlocked.Exchange(ref s_resume, new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).TrySetResult();
                    }
                    else if (command?.StartsWith("stall ", StringComparison.Ordinal) == true
                        && int.TryParse(command.AsSpan(6), NumberStyles.None, CultureInfo.InvariantCulture, out var seconds))
                    {
                        await Task.WhenAny(Volatile.Read(ref s_resume).Task, Task.Delay(TimeSpan.FromSeconds(seconds)));
                    }

                    long total = head;
                    long reported = 0;
                    var count = new byte[8];
                    while (read > 0 && (read = await socket.ReceiveAsync(buffer)) > 0)
                    {
                        total += read;
                        if (total - reported >= 1024 * 1024)
                        {
                            BinaryPrimitives.WriteInt64BigEndian(count, total);
                            await socket.SendAsync(count);
                            reported = total;
                        }
                    }

                    BinaryPrimitives.WriteInt64BigEndian(count, total);
                    await socket.SendAsync(count);
                    socket.Shutdown(SocketShutdown.Send);
                }
            });
        }
    }

    /// <summary>False while <paramref name="head"/> may still become a command line; else true, with the command if it is one.</summary>
    private static bool TryReadCommand(ReadOnlySpan<byte> head, out string? command)
    {
        command = null;
        if (head.Length < CommandPrefix.Length)
        {
            return !CommandPrefix.AsSpan().StartsWith(head);
        }

        if (!head.StartsWith(CommandPrefix))
        {
            return true;
        }

        var rest = head[CommandPrefix.Length..];
        var end = rest.IndexOf((byte)'\n');
        if (end < 0)
        {
            return rest.Length > 32;
        }

        command = Encoding.ASCII.GetString(rest[..end]);
        return true;
    }

    /// <summary>
    /// Sends <paramref name="megabytes"/> MB and prints the MB/s until the sink has counted them all;
    /// with <paramref name="seconds"/>, at most that long: then the MB/s the sink had counted by then.
    /// </summary>
    public static async Task<int> BulkAsync(int port, int megabytes, double? seconds)
    {
        using var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await socket.ConnectAsync(IPAddress.Loopback, port);
        var chunk = new byte[64 * 1024];
        Random.Shared.NextBytes(chunk);
        long sent = 0;
        long counted = 0;
        var clock = Stopwatch.StartNew();
        var counts = Task.Run(async () =>
        {
            while (await ReadCountAsync(socket) is { } count)
            {
                Interlocked.Exchange(ref counted, count);
            }
        });
        using var deadline = seconds is { } limit ? new CancellationTokenSource(TimeSpan.FromSeconds(limit)) : new CancellationTokenSource();
        try
        {
            while (sent < megabytes * 1024L * 1024)
            {
                sent += await socket.SendAsync(chunk, SocketFlags.None, deadline.Token);
            }

            socket.Shutdown(SocketShutdown.Send);
            await counts.WaitAsync(deadline.Token);
        }
        catch (Exception ex) when (seconds is not null && (deadline.IsCancellationRequested || ex is SocketException))
        {
            // Cut off: by the deadline, or by the path breaking the connection; what the sink counted by then is the figure.
            var mbps = Interlocked.Read(ref counted) / 1048576.0 / clock.Elapsed.TotalSeconds;
            Console.Error.WriteLine(deadline.IsCancellationRequested
                ? $"the sink counted {Interlocked.Read(ref counted) / 1048576.0:0.0} of {megabytes} MB within {seconds} s"
                : $"the connection broke after the sink counted {Interlocked.Read(ref counted) / 1048576.0:0.0} of {megabytes} MB: {ex.Message}");
            Console.WriteLine(mbps.ToString("0.0", CultureInfo.InvariantCulture));
            return 0;
        }

        if (counted != sent)
        {
            Console.Error.WriteLine($"sent {sent} bytes, the sink counted {counted}");
            return 1;
        }

        Console.WriteLine((sent / 1048576.0 / clock.Elapsed.TotalSeconds).ToString("0.0", CultureInfo.InvariantCulture));
        return 0;
    }

    /// <summary>
    /// The relay's baseline as the issue defines it: one direct TLS connection between the same two
    /// processes' kind (a client and a sink, a fresh self-signed certificate): the sink counts what
    /// arrives and answers the total when the client closes.
    /// </summary>
    public static async Task TlsSinkAsync(int port)
    {
        using var certificate = SelfSigned("bench-sink");
        using var listener = new TcpListener(IPAddress.Loopback, port);
        listener.Start();
        while (true)
        {
            var socket = await listener.AcceptSocketAsync();
            _ = Task.Run(async () =>
            {
                await using var tls = new System.Net.Security.SslStream(new NetworkStream(socket, ownsSocket: true));
                await tls.AuthenticateAsServerAsync(certificate);
                var buffer = new byte[256 * 1024];
                long total = 0;
                int read;
                while ((read = await tls.ReadAsync(buffer)) > 0)
                {
                    total += read;
                }

                var count = new byte[8];
                BinaryPrimitives.WriteInt64BigEndian(count, total);
                await tls.WriteAsync(count);
                await tls.ShutdownAsync();
            });
        }
    }

    /// <summary>Sends <paramref name="megabytes"/> MB over TLS to <see cref="TlsSinkAsync"/> and prints the MB/s once the sink has counted them.</summary>
    public static async Task<int> TlsBulkAsync(int port, int megabytes)
    {
        using var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await socket.ConnectAsync(IPAddress.Loopback, port);
        await using var tls = new System.Net.Security.SslStream(new NetworkStream(socket, ownsSocket: false));
        await tls.AuthenticateAsClientAsync(new System.Net.Security.SslClientAuthenticationOptions
        {
            TargetHost = "bench-sink",
#pragma warning disable CA5359 // the bench's own sink on loopback, with a certificate made for this run
            RemoteCertificateValidationCallback = (_, _, _, _) => true,
#pragma warning restore CA5359
        });
        var chunk = new byte[64 * 1024];
        Random.Shared.NextBytes(chunk);
        var clock = Stopwatch.StartNew();
        long sent = 0;
        while (sent < megabytes * 1024L * 1024)
        {
            await tls.WriteAsync(chunk);
            sent += chunk.Length;
        }

        await tls.ShutdownAsync();
        var count = new byte[8];
        await tls.ReadExactlyAsync(count);
        var counted = BinaryPrimitives.ReadInt64BigEndian(count);
        if (counted != sent)
        {
            Console.Error.WriteLine($"sent {sent} bytes over TLS, the sink counted {counted}");
            return 1;
        }

        Console.WriteLine((sent / 1048576.0 / clock.Elapsed.TotalSeconds).ToString("0.0", CultureInfo.InvariantCulture));
        return 0;
    }

    /// <summary>
    /// The least a relay hop can do: accept on <paramref name="port"/> (TLS with a fresh self-signed
    /// certificate when <paramref name="tlsIn"/>), connect to <paramref name="upstream"/> (TLS when
    /// <paramref name="tlsOut"/>, certificate not checked) and copy both ways in 256 KB reads, each
    /// direction half-closing the other side at its end. A chain of these with the hops of a real
    /// path (for port-forward: TCP in and TLS out, TLS both ways, TLS in and TCP out) measures what
    /// that path could reach on this machine with no protocol of its own.
    /// </summary>
    public static async Task HopAsync(int port, int upstream, bool tlsIn, bool tlsOut)
    {
        using var certificate = tlsIn ? SelfSigned("bench-hop") : null;
        using var listener = new TcpListener(IPAddress.Loopback, port);
        listener.Start();
        while (true)
        {
            var socket = await listener.AcceptSocketAsync();
            socket.NoDelay = true;
            _ = Task.Run(async () =>
            {
                using var accepted = socket; // closed however the hop ends, so its client never waits on a dead chain
                using var up = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
                try
                {
                    await up.ConnectAsync(IPAddress.Loopback, upstream);
                    Stream inner = new NetworkStream(socket, ownsSocket: true);
                    Stream outer = new NetworkStream(up, ownsSocket: false);
                    if (certificate is not null)
                    {
                        var tls = new SslStream(inner);
                        await tls.AuthenticateAsServerAsync(certificate);
                        inner = tls;
                    }

                    if (tlsOut)
                    {
                        var tls = new SslStream(outer);
                        await tls.AuthenticateAsClientAsync(new SslClientAuthenticationOptions
                        {
                            TargetHost = "bench-hop",
#pragma warning disable CA5359 // the bench's own hops on loopback, with certificates made for this run
                            RemoteCertificateValidationCallback = (_, _, _, _) => true,
#pragma warning restore CA5359
                        });
                        outer = tls;
                    }

                    await using (inner)
                    await using (outer)
                    {
                        await Task.WhenAll(CopyAsync(inner, outer, up), CopyAsync(outer, inner, socket));
                    }
                }
                catch (Exception ex) when (ex is IOException or SocketException or ObjectDisposedException)
                {
                    // One side went away.
                }
            });
        }

        static async Task CopyAsync(Stream from, Stream to, Socket toSocket)
        {
            var buffer = new byte[256 * 1024];
            int read;
            while ((read = await from.ReadAsync(buffer)) > 0)
            {
                await to.WriteAsync(buffer.AsMemory(0, read));
            }

            if (to is SslStream tls)
            {
                await tls.ShutdownAsync();
            }

            toSocket.Shutdown(SocketShutdown.Send);
        }
    }

    private static System.Security.Cryptography.X509Certificates.X509Certificate2 SelfSigned(string name)
    {
        using var key = System.Security.Cryptography.ECDsa.Create(System.Security.Cryptography.ECCurve.NamedCurves.nistP256);
        var request = new System.Security.Cryptography.X509Certificates.CertificateRequest($"CN={name}", key, System.Security.Cryptography.HashAlgorithmName.SHA256);
        using var self = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddDays(1));
        return System.Security.Cryptography.X509Certificates.X509CertificateLoader.LoadPkcs12(self.Export(System.Security.Cryptography.X509Certificates.X509ContentType.Pkcs12), null);
    }

    /// <summary>The sink's next 8-byte count, or null at the end of the stream.</summary>
    private static async Task<long?> ReadCountAsync(Socket socket)
    {
        var count = new byte[8];
        var got = 0;
        while (got < 8)
        {
            var read = await socket.ReceiveAsync(count.AsMemory(got));
            if (read == 0)
            {
                return null;
            }

            got += read;
        }

        return BinaryPrimitives.ReadInt64BigEndian(count);
    }

    /// <summary>The sink's last count before it closed, or null if it sent none.</summary>
    private static async Task<long?> ReadTotalAsync(Socket socket)
    {
        long? total = null;
        while (await ReadCountAsync(socket) is { } count)
        {
            total = count;
        }

        return total;
    }

    /// <summary>
    /// A connection whose reader stops: asks the sink (through whatever forwards <paramref name="port"/>)
    /// not to read it for up to <paramref name="seconds"/>, writes until nothing has moved for a
    /// second and prints <c>stalled MB</c> (what went in before the path filled up). It holds the
    /// connection, a send pending, until the sink reads again (`resume`), then checks the sink
    /// counted every byte and prints <c>delivered MB</c>; exits 3 if the path broke the connection.
    /// </summary>
    public static async Task<int> StalledAsync(int port, int seconds)
    {
        using var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await socket.ConnectAsync(IPAddress.Loopback, port);
        long sent = await socket.SendAsync(Encoding.ASCII.GetBytes($"outpost-bench stall {seconds.ToString(CultureInfo.InvariantCulture)}\n"));
        var chunk = new byte[64 * 1024];
        Random.Shared.NextBytes(chunk);
        var moved = Stopwatch.GetTimestamp();
        var stalled = false;
        var writer = Task.Run(async () =>
        {
            // The send pending when the path filled completes once the sink reads again: the last one.
            while (!Volatile.Read(ref stalled))
            {
                Interlocked.Add(ref sent, await socket.SendAsync(chunk));
                Interlocked.Exchange(ref moved, Stopwatch.GetTimestamp());
            }
        });
        var clock = Stopwatch.StartNew();
        while (Stopwatch.GetElapsedTime(Interlocked.Read(ref moved)) < TimeSpan.FromSeconds(1))
        {
            if (writer.IsCompleted || clock.Elapsed.TotalSeconds > seconds)
            {
                Volatile.Write(ref stalled, true);
                await writer;
                Console.Error.WriteLine($"the path never filled up: {Interlocked.Read(ref sent)} bytes went in within {clock.Elapsed.TotalSeconds:0} s");
                return 1;
            }

            await Task.Delay(50);
        }

        Volatile.Write(ref stalled, true);
        Console.WriteLine("stalled " + (Interlocked.Read(ref sent) / 1048576.0).ToString("0.0", CultureInfo.InvariantCulture));
        long? counted;
        try
        {
            await writer;
            socket.Shutdown(SocketShutdown.Send);
            counted = await ReadTotalAsync(socket);
        }
        catch (SocketException ex)
        {
            Console.WriteLine($"broken {ex.Message}");
            return 3;
        }

        if (counted != sent)
        {
            Console.Error.WriteLine($"sent {sent} bytes through the stalled connection, the sink counted {counted?.ToString(CultureInfo.InvariantCulture) ?? "nothing"}");
            return 1;
        }

        Console.WriteLine("delivered " + (sent / 1048576.0).ToString("0.0", CultureInfo.InvariantCulture));
        return 0;
    }

    /// <summary>Tells the sink on <paramref name="port"/> to read its stalled connections again.</summary>
    public static async Task<int> ResumeAsync(int port)
    {
        using var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await socket.ConnectAsync(IPAddress.Loopback, port);
        await socket.SendAsync("outpost-bench resume\n"u8.ToArray());
        socket.Shutdown(SocketShutdown.Send);
        return await ReadTotalAsync(socket) is null ? 1 : 0;
    }

    /// <summary>Complete connections per second (one byte there, the count back) with <paramref name="concurrency"/> at once.</summary>
    public static async Task<int> ConnectsAsync(int port, double seconds, int concurrency)
    {
        long done = 0;
        long failed = 0;
        var until = Stopwatch.StartNew();
        var workers = Enumerable.Range(0, concurrency).Select(_ => Task.Run(async () =>
        {
            var one = new byte[] { 1 };
            while (until.Elapsed.TotalSeconds < seconds)
            {
                try
                {
                    using var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
                    await socket.ConnectAsync(IPAddress.Loopback, port);
                    await socket.SendAsync(one);
                    socket.Shutdown(SocketShutdown.Send);
                    if (await ReadTotalAsync(socket) == 1)
                    {
                        Interlocked.Increment(ref done);
                    }
                    else
                    {
                        Interlocked.Increment(ref failed);
                    }
                }
                catch (SocketException)
                {
                    Interlocked.Increment(ref failed);
                }
            }
        })).ToArray();
        await Task.WhenAll(workers);
        if (failed > done / 100)
        {
            Console.Error.WriteLine($"{failed} of {done + failed} connections failed");
            return 1;
        }

        Console.WriteLine((done / until.Elapsed.TotalSeconds).ToString("0", CultureInfo.InvariantCulture));
        return 0;
    }

    /// <summary>
    /// Open-loop latency, as wrk2 measures it: GET <paramref name="url"/> at a fixed
    /// <paramref name="rate"/> per second whatever the answers do, each timed from when it was due
    /// (so a slow answer cannot delay the next request and hide itself). A warm-up of up to 2 s at
    /// the same rate fills the connection pool first. At most 16 connections, as wrk -c16 elsewhere in the
    /// scenario: a request due while all are busy waits for one, and the wait counts; each new
    /// connection through /proxy/services is a wire on the node's link, which holds a hundred streams.
    /// Prints <c>P50 P99</c> in milliseconds.
    /// <paramref name="header"/> ("Name: value") goes on every request. TLS is accepted from any
    /// certificate for a loopback URL only (the server's self-signed CA), and checked as usual otherwise.
    /// </summary>
    public static async Task<int> LatencyAsync(Uri url, int rate, double seconds, string? header)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(rate, 1);
        var loopback = IPAddress.TryParse(url.Host.Trim('[', ']'), out var ip) && IPAddress.IsLoopback(ip);
        using var handler = new SocketsHttpHandler
        {
            UseProxy = false,
            UseCookies = false,
            MaxConnectionsPerServer = 16,
            PooledConnectionIdleTimeout = TimeSpan.FromMinutes(5),
            SslOptions = new SslClientAuthenticationOptions
            {
                RemoteCertificateValidationCallback = (_, _, _, errors) => loopback || errors == SslPolicyErrors.None,
            },
        };
        using var client = new HttpClient(handler) { Timeout = TimeSpan.FromSeconds(10) };
        if (header is not null)
        {
            var colon = header.IndexOf(':', StringComparison.Ordinal);
            client.DefaultRequestHeaders.TryAddWithoutValidation(header[..colon].Trim(), header[(colon + 1)..].Trim());
        }

        await OpenLoopAsync(client, url, rate, Math.Min(2, seconds));
        var latencies = await OpenLoopAsync(client, url, rate, seconds);
        var failed = latencies.Count(double.IsNaN);
        if (failed > latencies.Length / 100)
        {
            Console.Error.WriteLine($"{failed} of {latencies.Length} requests to {url} failed");
            return 1;
        }

        var sorted = latencies.Where(l => !double.IsNaN(l)).Order().ToArray();
        double Percentile(double p) => sorted[Math.Max(0, (int)Math.Ceiling(p * sorted.Length) - 1)];
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{Percentile(0.50):0.00} {Percentile(0.99):0.00}"));
        return 0;
    }

    /// <summary>
    /// Latencies in ms of <paramref name="rate"/> × <paramref name="seconds"/> requests sent on
    /// schedule (NaN: failed). A thread of its own sends each request when it is due, sleeping in
    /// between with nanosleep (tens of µs of slop, where a 1 ms timer sent them in bursts and
    /// counted up to a millisecond of its own lateness into every path measured).
    /// </summary>
    private static async Task<double[]> OpenLoopAsync(HttpClient client, Uri url, int rate, double seconds)
    {
        var total = (int)(rate * seconds);
        var latencies = new double[total];
        var requests = new Task[total];
        var tick = Stopwatch.Frequency / (double)rate;
        var pacer = new Thread(() =>
        {
            var start = Stopwatch.GetTimestamp();
            for (var next = 0; next < total; next++)
            {
                var due = start + (long)(next * tick);
                var wait = Stopwatch.GetElapsedTime(Stopwatch.GetTimestamp(), due);
                if (wait > TimeSpan.Zero)
                {
                    _ = usleep((uint)Math.Max(1, wait.TotalMicroseconds));
                }

                requests[next] = TimeOneAsync(client, url, due, latencies, next);
            }
        })
        { IsBackground = true, Name = "pacer" };
        pacer.Start();
        await Task.Run(pacer.Join);
        await Task.WhenAll(requests);
        return latencies;
    }

    [System.Runtime.InteropServices.DllImport("libc", SetLastError = true)]
    private static extern int usleep(uint microseconds);

    private static async Task TimeOneAsync(HttpClient client, Uri url, long due, double[] latencies, int index)
    {
        try
        {
            using var response = await client.GetAsync(url, HttpCompletionOption.ResponseContentRead);
            latencies[index] = response.IsSuccessStatusCode ? Stopwatch.GetElapsedTime(due).TotalMilliseconds : double.NaN;
        }
        catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException)
        {
            latencies[index] = double.NaN;
        }
    }

    /// <summary>
    /// Opens <paramref name="count"/> idle connections to <paramref name="address"/>:<paramref name="port"/>
    /// (at most <paramref name="concurrency"/> connecting at once), prints <c>open N FAILED</c> when
    /// every attempt is done, holds them <paramref name="seconds"/> and prints <c>alive N</c>: how
    /// many the far side has not closed meanwhile.
    /// </summary>
    public static async Task<int> HoldAsync(IPAddress address, int port, int count, int concurrency, double seconds)
    {
        var sockets = new Socket?[count];
        var failures = new System.Collections.Concurrent.ConcurrentDictionary<string, int>(StringComparer.Ordinal);
        await Parallel.ForAsync(0, count, new ParallelOptions { MaxDegreeOfParallelism = concurrency }, async (i, ct) =>
        {
            var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
            try
            {
                await socket.ConnectAsync(address, port, ct);
                sockets[i] = socket;
            }
            catch (SocketException ex)
            {
                socket.Dispose();
                failures.AddOrUpdate(ex.SocketErrorCode.ToString(), 1, (_, n) => n + 1);
            }
        });
        var open = sockets.Count(s => s is not null);
        Console.WriteLine($"open {open} {count - open}");
        foreach (var (error, n) in failures)
        {
            Console.Error.WriteLine($"{n} connects failed: {error}");
        }

        await Task.Delay(TimeSpan.FromSeconds(seconds));
        // Closed by the far side: readable with nothing to read.
        var alive = sockets.Count(s => s is not null && !(s.Poll(0, SelectMode.SelectRead) && s.Available == 0));
        Console.WriteLine($"alive {alive}");
        foreach (var socket in sockets)
        {
            socket?.Dispose();
        }

        return 0;
    }
}
