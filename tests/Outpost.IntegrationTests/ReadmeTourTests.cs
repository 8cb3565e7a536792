using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;

namespace Outpost.IntegrationTests;

/// <summary>
/// The README's tour, run as written: `./outpost up`, then every command of its shell blocks in
/// order, each of which must succeed and print something (what a `curl` comment says it prints,
/// where it says). Only the ports differ: `up` gets free ones, and the commands are rewritten to
/// match. The "run the roles yourself" block starts long-running processes in the foreground, as
/// `up` does for the tour; the server and agent tests cover it.
/// </summary>
[Collection(RunsAlone.Name)]
[Trait("Category", "aot")]
public sealed class ReadmeTourTests
{
    /// <summary>How long a following command (logs -f) runs before it is stopped, as a user's Ctrl-C.</summary>
    private static readonly TimeSpan FollowFor = TimeSpan.FromSeconds(8);

    [Fact]
    public async Task TheTour_FollowedLiterally_ShowsOutputAtEveryStep()
    {
        await using var fleet = new Fleet();
        var repo = Repository.Root;
        var readme = await File.ReadAllTextAsync(Path.Combine(repo, "README.md"));
        var start = readme.IndexOf("## A 5-minute tour", StringComparison.Ordinal);
        var tour = readme[start..readme.IndexOf("\n## ", start + 1, StringComparison.Ordinal)];
        var blocks = Regex.Matches(tour, @"```(\w*)\n(.*?)```", RegexOptions.Singleline).Select(m => (Language: m.Groups[1].Value, Text: m.Groups[2].Value)).ToList();
        Assert.Contains("```sh\n./outpost up\n```", readme[..start], StringComparison.Ordinal); // "On a fresh machine"

        var dir = Directory.CreateDirectory(Path.Combine(fleet.Root, "tour")).FullName;
        var shim = Path.Combine(dir, "outpost");
        await File.WriteAllTextAsync(shim, $"#!/bin/sh\nexec {OutpostProcess.ShellCommand} \"$@\"\n");
        File.SetUnixFileMode(shim, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        var server = Ports.FreeRun(3);
        var gateway = server + 1;
        string Local(string text) => text
            .Replace("127.0.0.1:7440", $"127.0.0.1:{server}", StringComparison.Ordinal)
            .Replace("127.0.0.1:8080", $"127.0.0.1:{gateway}", StringComparison.Ordinal)
            .Replace("127.0.0.1:8081", $"127.0.0.1:{gateway + 1}", StringComparison.Ordinal)
            .Replace("/tmp/", dir + "/", StringComparison.Ordinal) // before the repository's path goes in: it may be under /tmp
            .Replace("/path/to/outpost", repo, StringComparison.Ordinal);

        // The README's own ports would do on a machine of one's own; here another test or program may hold them.
        await using var up = OutpostProcess.Start(fleet.Home, "up", "--server-port", server.ToString(CultureInfo.InvariantCulture),
            "--gateway-port", gateway.ToString(CultureInfo.InvariantCulture), "--manifests", Path.Combine(repo, "samples", "manifests"));
        await up.WaitForLineAsync("fleet up", Fleet.StartTimeout);
        foreach (var line in blocks[0].Text.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            Assert.Contains(Local(line), up.Output, StringComparison.Ordinal); // what the tour says `up` prints
        }

        var exports = new List<string>();
        var ran = 0;
        foreach (var (language, text) in blocks.Skip(1))
        {
            if (language != "sh" || text.Contains("outpost server", StringComparison.Ordinal))
            {
                continue;
            }

            foreach (var (command, comment) in Commands(text))
            {
                var script = Local(command);
                if (script.StartsWith("export ", StringComparison.Ordinal))
                {
                    exports.Add(script);
                    continue;
                }

                var follows = Regex.IsMatch(script, @"^\./outpost logs .* -f\b");
                var silent = Regex.IsMatch(script, @"^cat > \S+ <<"); // writes a file
                var expected = script.StartsWith("curl ", StringComparison.Ordinal) && comment is not null ? comment.Split(':')[0].Trim() : null;
                await Eventually.UntilAsync(() => RunAsync(dir, fleet.Home, exports, script, follows),
                    r => (r.ExitCode == 0 || (follows && r.ExitCode == 124)) && (silent || r.Output.Trim().Length > 0)
                        && (expected is null || r.Output.Contains(expected, StringComparison.Ordinal)),
                    Fleet.Patience, $"`{script}` to succeed{(expected is null ? "" : $" and print '{expected}'")}", r => $"exit {r.ExitCode}:\n{r.Output}");
                ran++;
            }
        }

        Assert.True(ran >= 15, $"only {ran} tour commands were found in README.md");
        await up.StopAsync();
    }

    /// <summary>A block's commands, each with its trailing comment: continued lines and here-documents stay one command.</summary>
    private static List<(string Command, string? Comment)> Commands(string block)
    {
        var lines = block.Split('\n');
        var commands = new List<(string, string?)>();
        for (var i = 0; i < lines.Length; i++)
        {
            if (lines[i].Trim().Length == 0 || lines[i].TrimStart().StartsWith('#'))
            {
                continue;
            }

            var command = lines[i];
            while (command.TrimEnd().EndsWith('\\') && i + 1 < lines.Length)
            {
                command += "\n" + lines[++i];
            }

            if (Regex.Match(command, @"<<'(\w+)'") is { Success: true } heredoc)
            {
                while (++i < lines.Length && lines[i] != heredoc.Groups[1].Value)
                {
                    command += "\n" + lines[i];
                }

                command += "\n" + heredoc.Groups[1].Value;
            }

            var hash = command.IndexOf(" # ", StringComparison.Ordinal);
            commands.Add(hash < 0 || command.Contains('\n', StringComparison.Ordinal) ? (command, null) : (command[..hash].TrimEnd(), command[(hash + 3)..].Trim()));
        }

        return commands;
    }

    private static async Task<(int ExitCode, string Output)> RunAsync(string dir, string home, List<string> exports, string script, bool follows)
    {
        var info = new ProcessStartInfo("bash", ["-c", string.Join("\n", [.. exports, follows ? $"timeout {FollowFor.TotalSeconds} {script}" : script])])
        {
            WorkingDirectory = dir,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        info.Environment["HOME"] = home;
        info.Environment.Remove("OUTPOST_CONFIG");
        info.Environment.Remove("KUBECONFIG");
        using var process = Process.Start(info)!;
        return await Tool.CompleteAsync(process, script);
    }
}
