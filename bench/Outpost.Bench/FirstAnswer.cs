using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;

namespace Outpost.Bench;

/// <summary>
/// Time from starting a process to the first 2xx from a URL it serves: what "start to serving"
/// means to a client, runtime start-up included. Stops the process with SIGTERM and prints the
/// milliseconds.
/// </summary>
/// <remarks>
/// The harness keeps its own cost out of the figure, for either build alike. The process is
/// started with posix_spawn (.NET's Process.Start took 2.5-3.5 ms before the child ran), its
/// output goes to /dev/null, and the URL is polled every millisecond with a bare socket and a
/// one-line GET (HttpClient's first request to a new port took ~4 ms even when the server was
/// already listening). A C server that answers at once measures ~1-2 ms with this harness. The
/// poll and spawn paths run once before the clock starts, so nothing is compiled while it runs.
/// </remarks>
internal static partial class FirstAnswer
{
    private const int SigTerm = 15;
    private const int SigKill = 9;
    private const int WaitNoHang = 1;

    public static int Run(string url, string program, IReadOnlyList<string> args)
    {
        var uri = new Uri(url);
        var endpoint = new IPEndPoint(IPAddress.Parse(uri.Host), uri.Port);
        var request = Encoding.ASCII.GetBytes($"GET {uri.PathAndQuery} HTTP/1.1\r\nHost: {uri.Authority}\r\nConnection: close\r\n\r\n");
        WarmUp(request);

        var clock = Stopwatch.StartNew();
        var pid = Spawn(program, args);
        double? ms = null;
        while (clock.Elapsed < TimeSpan.FromSeconds(30) && !Exited(pid, out _))
        {
            if (Answered(endpoint, request))
            {
                ms = clock.Elapsed.TotalMilliseconds;
                break;
            }

            Thread.Sleep(1);
        }

        Stop(pid);
        if (ms is null)
        {
            Console.Error.WriteLine($"{url} never answered 2xx within 30 s");
            return 1;
        }

        Console.WriteLine(ms.Value.ToString("0.0", CultureInfo.InvariantCulture));
        return 0;
    }

    /// <summary>One GET: false when nothing listens yet, or the answer is not a 2xx.</summary>
    private static bool Answered(IPEndPoint endpoint, byte[] request)
    {
        using var socket = new Socket(endpoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true, ReceiveTimeout = 5_000 };
        try
        {
            socket.Connect(endpoint);
            socket.Send(request);
            var status = new byte[12]; // "HTTP/1.1 200"
            var got = 0;
            while (got < status.Length)
            {
                var read = socket.Receive(status, got, status.Length - got, SocketFlags.None);
                if (read == 0)
                {
                    return false;
                }

                got += read;
            }

            return status[9] == (byte)'2';
        }
        catch (SocketException)
        {
            return false; // not listening yet, or reset while starting
        }
    }

    /// <summary>A refused poll, an answered one, and a spawned process, before the clock runs.</summary>
    private static void WarmUp(byte[] request)
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var endpoint = (IPEndPoint)listener.LocalEndpoint;
        var answer = Task.Run(() =>
        {
            using var client = listener.AcceptTcpClient();
            var stream = client.GetStream();
            var seen = new StringBuilder();
            var buffer = new byte[4096];
            while (!seen.ToString().Contains("\r\n\r\n", StringComparison.Ordinal))
            {
                var read = stream.Read(buffer);
                if (read == 0)
                {
                    return;
                }

                seen.Append(Encoding.ASCII.GetString(buffer, 0, read));
            }

            stream.Write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"u8);
        });
        if (!Answered(endpoint, request))
        {
            throw new InvalidOperationException("the harness's own warm-up request was not answered");
        }

        answer.GetAwaiter().GetResult();
        listener.Stop();
        _ = Answered(endpoint, request); // refused: nothing listens there now

        var pid = Spawn("true", []);
        while (!Exited(pid, out _))
        {
            Thread.Sleep(1);
        }
    }

    private static int Spawn(string program, IReadOnlyList<string> args)
    {
        var actions = Marshal.AllocHGlobal(256); // posix_spawn_file_actions_t is 80 bytes in glibc
        try
        {
            Check(PosixSpawnFileActionsInit(actions), "posix_spawn_file_actions_init");
            Check(PosixSpawnFileActionsAddOpen(actions, 1, "/dev/null", 1 /* O_WRONLY */, 0), "posix_spawn_file_actions_addopen");
            Check(PosixSpawnFileActionsAddDup2(actions, 1, 2), "posix_spawn_file_actions_adddup2");
            string?[] argv = [program, .. args, null];
            var environ = Marshal.ReadIntPtr(NativeLibrary.GetExport(NativeLibrary.Load("libc.so.6"), "environ"));
            Check(PosixSpawnP(out var pid, program, actions, IntPtr.Zero, argv, environ), $"posix_spawnp {program}");
            return pid;
        }
        finally
        {
            _ = PosixSpawnFileActionsDestroy(actions);
            Marshal.FreeHGlobal(actions);
        }
    }

    private static bool Exited(int pid, out int status) => WaitPid(pid, out status, WaitNoHang) == pid;

    /// <summary>SIGTERM, then SIGKILL after 10 s; reaped either way.</summary>
    private static void Stop(int pid)
    {
        if (Exited(pid, out _))
        {
            return;
        }

        _ = Kill(pid, SigTerm);
        var deadline = Stopwatch.StartNew();
        while (!Exited(pid, out _))
        {
            if (deadline.Elapsed > TimeSpan.FromSeconds(10))
            {
                _ = Kill(pid, SigKill);
                _ = WaitPid(pid, out _, 0);
                return;
            }

            Thread.Sleep(5);
        }
    }

    private static void Check(int error, string what)
    {
        if (error != 0)
        {
            throw new InvalidOperationException($"{what}: error {error}");
        }
    }

    [LibraryImport("libc", EntryPoint = "posix_spawnp", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int PosixSpawnP(out int pid, string file, IntPtr fileActions, IntPtr attributes, string?[] argv, IntPtr envp);

    [LibraryImport("libc", EntryPoint = "posix_spawn_file_actions_init")]
    private static partial int PosixSpawnFileActionsInit(IntPtr actions);

    [LibraryImport("libc", EntryPoint = "posix_spawn_file_actions_addopen", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int PosixSpawnFileActionsAddOpen(IntPtr actions, int fd, string path, int flags, int mode);

    [LibraryImport("libc", EntryPoint = "posix_spawn_file_actions_adddup2")]
    private static partial int PosixSpawnFileActionsAddDup2(IntPtr actions, int fd, int newFd);

    [LibraryImport("libc", EntryPoint = "posix_spawn_file_actions_destroy")]
    private static partial int PosixSpawnFileActionsDestroy(IntPtr actions);

    [LibraryImport("libc", EntryPoint = "kill")]
    private static partial int Kill(int pid, int signal);

    [LibraryImport("libc", EntryPoint = "waitpid")]
    private static partial int WaitPid(int pid, out int status, int options);
}
