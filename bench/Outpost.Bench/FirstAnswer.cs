using System.Diagnostics;
using System.Globalization;

namespace Outpost.Bench;

/// <summary>
/// Time from starting a process to the first 200 from a URL it serves: what "start to serving"
/// means to a client, runtime start-up included. Polls every millisecond, then stops the process
/// with SIGTERM and prints the milliseconds. The bench's own first request and first process
/// start (their JIT) happen before the clock starts, so the figure is the measured process's
/// alone, for either build.
/// </summary>
internal static class FirstAnswer
{
    public static async Task<int> RunAsync(string url, string program, IReadOnlyList<string> args)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(2) };
        await WarmUpAsync(http, url);
        var info = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var arg in args)
        {
            info.ArgumentList.Add(arg);
        }

        // Starting a process compiles its own path the first time: start one before the clock too.
        using (var warm = Process.Start(new ProcessStartInfo("true") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false })!)
        {
            _ = warm.StandardOutput.ReadToEndAsync();
            _ = warm.StandardError.ReadToEndAsync();
            await warm.WaitForExitAsync();
        }

        var clock = Stopwatch.StartNew();
        using var process = Process.Start(info)!;
        _ = process.StandardOutput.ReadToEndAsync();
        _ = process.StandardError.ReadToEndAsync();
        double? ms = null;
        while (clock.Elapsed < TimeSpan.FromSeconds(30) && !process.HasExited)
        {
            try
            {
                using var response = await http.GetAsync(url);
                if (response.IsSuccessStatusCode)
                {
                    ms = clock.Elapsed.TotalMilliseconds;
                    break;
                }
            }
            catch (HttpRequestException)
            {
                // Not listening yet.
            }

            await Task.Delay(1);
        }

        using (var kill = Process.Start("kill", ["-TERM", process.Id.ToString(CultureInfo.InvariantCulture)]))
        {
            await kill.WaitForExitAsync();
        }

        if (!process.WaitForExit(10_000))
        {
            process.Kill();
        }

        if (ms is null)
        {
            Console.Error.WriteLine($"{url} never answered 200 within 30 s");
            return 1;
        }

        Console.WriteLine(ms.Value.ToString("0.0", CultureInfo.InvariantCulture));
        return 0;
    }

    /// <summary>One refused and one answered request, so neither path is compiled while the clock runs.</summary>
    private static async Task WarmUpAsync(HttpClient http, string url)
    {
        using var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        var port = ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
        var answer = Task.Run(async () =>
        {
            using var client = await listener.AcceptTcpClientAsync();
            var stream = client.GetStream();
            var buffer = new byte[4096];
            var seen = "";
            while (!seen.Contains("\r\n\r\n", StringComparison.Ordinal))
            {
                var read = await stream.ReadAsync(buffer);
                if (read == 0)
                {
                    return;
                }

                seen += System.Text.Encoding.ASCII.GetString(buffer, 0, read);
            }

            await stream.WriteAsync("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"u8.ToArray());
        });
        using (var response = await http.GetAsync(new UriBuilder(url) { Port = port }.Uri))
        {
            response.EnsureSuccessStatusCode();
        }

        await answer;
        listener.Stop();
        try
        {
            using var refused = await http.GetAsync(new UriBuilder(url) { Port = port }.Uri);
        }
        catch (HttpRequestException)
        {
            // Expected: nothing listens there any more.
        }
    }
}
