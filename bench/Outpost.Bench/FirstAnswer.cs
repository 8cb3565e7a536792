using System.Diagnostics;
using System.Globalization;

namespace Outpost.Bench;

/// <summary>
/// Time from starting a process to the first 200 from a URL it serves: what "start to serving"
/// means to a client, runtime start-up included. Polls every millisecond, then stops the process
/// with SIGTERM and prints the milliseconds.
/// </summary>
internal static class FirstAnswer
{
    public static async Task<int> RunAsync(string url, string program, IReadOnlyList<string> args)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(2) };
        var info = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var arg in args)
        {
            info.ArgumentList.Add(arg);
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
}
