using System.Buffers.Binary;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;

namespace Outpost.Bench;

/// <summary>
/// Byte-level helpers for `bench/run.sh mesh`: a TCP sink that answers each connection, at its
/// end of stream, with the count of bytes it read; a bulk sender that measures MB/s to it; and a
/// connection-rate probe (connect, one byte, end of stream, the count back, close).
/// </summary>
internal static class MeshBench
{
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
                    long total = 0;
                    int read;
                    while ((read = await socket.ReceiveAsync(buffer)) > 0)
                    {
                        total += read;
                    }

                    var count = new byte[8];
                    BinaryPrimitives.WriteInt64BigEndian(count, total);
                    await socket.SendAsync(count);
                    socket.Shutdown(SocketShutdown.Send);
                }
            });
        }
    }

    /// <summary>Sends <paramref name="megabytes"/> MB and prints the MB/s until the sink has counted them all.</summary>
    public static async Task<int> BulkAsync(int port, int megabytes)
    {
        using var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        await socket.ConnectAsync(IPAddress.Loopback, port);
        var chunk = new byte[64 * 1024];
        Random.Shared.NextBytes(chunk);
        long sent = 0;
        var clock = Stopwatch.StartNew();
        while (sent < megabytes * 1024L * 1024)
        {
            sent += await socket.SendAsync(chunk);
        }

        socket.Shutdown(SocketShutdown.Send);
        var count = new byte[8];
        var got = 0;
        while (got < 8)
        {
            var read = await socket.ReceiveAsync(count.AsMemory(got));
            if (read == 0)
            {
                Console.Error.WriteLine($"the sink closed after {got} of 8 count bytes");
                return 1;
            }

            got += read;
        }

        var counted = BinaryPrimitives.ReadInt64BigEndian(count);
        if (counted != sent)
        {
            Console.Error.WriteLine($"sent {sent} bytes, the sink counted {counted}");
            return 1;
        }

        Console.WriteLine((sent / 1048576.0 / clock.Elapsed.TotalSeconds).ToString("0.0", CultureInfo.InvariantCulture));
        return 0;
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
            var count = new byte[8];
            while (until.Elapsed.TotalSeconds < seconds)
            {
                try
                {
                    using var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
                    await socket.ConnectAsync(IPAddress.Loopback, port);
                    await socket.SendAsync(one);
                    socket.Shutdown(SocketShutdown.Send);
                    var got = 0;
                    int read;
                    while (got < 8 && (read = await socket.ReceiveAsync(count.AsMemory(got))) > 0)
                    {
                        got += read;
                    }

                    if (got == 8 && BinaryPrimitives.ReadInt64BigEndian(count) == 1)
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
}
