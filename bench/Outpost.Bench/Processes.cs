using System.Diagnostics;
using System.Globalization;

namespace Outpost.Bench;

/// <summary>Starting, reading and stopping the real outpost processes a scenario runs.</summary>
internal static class Processes
{
    public static async Task WaitAsync(Func<Task<bool>> condition, string what)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromMinutes(2);
        while (!await condition())
        {
            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"timed out waiting for {what}");
            }

            await Task.Delay(100);
        }
    }

    public static Process Start(List<Process> processes, string dll, string home, params string[] args)
    {
        var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        info.ArgumentList.Add(dll);
        foreach (var arg in args)
        {
            info.ArgumentList.Add(arg);
        }

        info.Environment["HOME"] = home;
        var process = Process.Start(info)!;
        processes.Add(process);
        return process;
    }

    public static async Task<string> LineAsync(Process process, string prefix)
    {
        while (await process.StandardOutput.ReadLineAsync() is { } line)
        {
            if (line.StartsWith(prefix, StringComparison.Ordinal))
            {
                _ = process.StandardOutput.ReadToEndAsync(); // keep draining
                _ = process.StandardError.ReadToEndAsync();
                return line[prefix.Length..].Trim();
            }
        }

        throw new InvalidOperationException($"process exited before printing '{prefix}': {await process.StandardError.ReadToEndAsync()}");
    }

    public static async Task<string> RunAsync(string dll, string home, params string[] args)
    {
        var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        info.ArgumentList.Add(dll);
        foreach (var arg in args)
        {
            info.ArgumentList.Add(arg);
        }

        info.Environment["HOME"] = home;
        using var process = Process.Start(info)!;
        var output = await process.StandardOutput.ReadToEndAsync();
        var error = await process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        return process.ExitCode == 0 ? output : throw new InvalidOperationException($"outpost {string.Join(' ', args)} failed: {error}");
    }

    public static void Stop(Process process)
    {
        if (!process.HasExited)
        {
            using var kill = Process.Start("kill", ["-TERM", process.Id.ToString(CultureInfo.InvariantCulture)]);
            kill.WaitForExit();
            if (!process.WaitForExit(20_000))
            {
                process.Kill(entireProcessTree: true);
            }
        }
    }

    /// <summary>An HTTP/2 client for the server's API with the admin token, trusting only the server's CA, from a client config.yaml.</summary>
    public static async Task<HttpClient> ApiClientAsync(string configPath)
    {
        var config = Core.Api.ClientConfig.Parse(await File.ReadAllTextAsync(configPath), configPath);
        var handler = new SocketsHttpHandler
        {
            SslOptions = new System.Net.Security.SslClientAuthenticationOptions
            {
                RemoteCertificateValidationCallback = Core.Security.TrustBundle.FromPem(config.CertificateAuthorityPem!).ServerValidator(),
            },
        };
        var http = new HttpClient(handler) { DefaultRequestVersion = System.Net.HttpVersion.Version20, DefaultVersionPolicy = HttpVersionPolicy.RequestVersionExact };
        http.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", config.Token);
        return http;
    }

    /// <summary>Stops every process a scenario started and deletes its work directory.</summary>
    public static void StopAll(List<Process> processes, string work)
    {
        foreach (var process in processes)
        {
            Stop(process);
        }

        Directory.Delete(work, recursive: true);
    }

    /// <summary>Starts `outpost server` in WORK/DIR (default server) with HOME in WORK/home; returns its URL, client config path and a join token.</summary>
    public static async Task<(string Home, string ServerUrl, string Config, string Token)> StartServerAsync(List<Process> processes, string outpostDll, string work,
        string dir = "server", params string[] extra)
    {
        var home = Path.Combine(work, "home");
        Directory.CreateDirectory(home);
        var server = Start(processes, outpostDll, home, ["server", "--data-dir", Path.Combine(work, dir), "--listen", "127.0.0.1:0", .. extra]);
        var serverUrl = await LineAsync(server, "server:");
        var config = Path.Combine(work, dir, "config.yaml");
        var token = (await RunAsync(outpostDll, home, "token", "create", "--config", config)).Trim();
        return (home, serverUrl, config, token);
    }
}
