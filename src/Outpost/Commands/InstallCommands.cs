using System.CommandLine;
using System.Globalization;
using System.Text;
using Outpost.Core.Manifests;

namespace Outpost.Commands;

/// <summary>
/// `outpost agent install`, `outpost server install` and `outpost uninstall`: the binary in
/// /usr/local/bin, a systemd unit per role (Restart=always, a high LimitNOFILE) and its settings
/// in /etc/default/outpost-ROLE (mode 0600: an agent's holds its join token), as k3s's installer
/// does. Every file is written beside its target first and renamed into place only when all of
/// them could be written: a failure (not root, a read-only /etc) names the path and leaves
/// nothing behind. `--dry-run` prints the files and changes nothing; `--root DIR` installs under
/// DIR (an image being prepared, or a test).
/// </summary>
internal static class InstallCommands
{
    private const string BinaryPath = "/usr/local/bin/outpost";
    private const string LibDir = "/var/lib/outpost/lib";

    private static readonly string[] Roles = ["agent", "server"];

    private static readonly Option<bool> DryRun = new("--dry-run") { Description = "Print what would be written and change nothing" };

    private static readonly Option<string?> Root = new("--root") { Description = "Install under this directory instead of / (to prepare an image)" };

    /// <summary>A file to write: its path under the root, content and Unix mode.</summary>
    internal sealed record PlannedFile(string Path, byte[]? Content, UnixFileMode Mode, string? CopyFrom = null);

    public static Command AgentInstall()
    {
        var name = new Option<string>("--name") { Description = "Node name (default: the host name)", DefaultValueFactory = _ => Environment.MachineName.ToLowerInvariant() };
        var labels = new Option<string?>("--labels") { Description = "Node labels, k=v,k2=v2" };
        var dataDir = new Option<string>("--data-dir") { Description = "The agent's state", DefaultValueFactory = _ => "/var/lib/outpost/agent" };
        var gateway = new Option<string>("--gateway") { Description = "The node's HTTP gateway (HOST:PORT)", DefaultValueFactory = _ => "0.0.0.0:8080" };
        var tokenFile = new Option<string?>("--token-file") { Description = "Read the join token from this file instead of --token" };
        var command = new Command("install", "Install this binary as the node's agent service: /usr/local/bin/outpost, outpost-agent.service and /etc/default/outpost-agent")
        {
            name, labels, dataDir, gateway, tokenFile, DryRun, Root,
        };
        command.SetAction((result, ct) => ClientCommands.Run(async () =>
        {
            var server = result.GetValue(CommonOptions.Server) ?? throw new ManifestException("--server is required: the control plane's URL, e.g. https://cloud.example.com:7440");
            if (!Uri.TryCreate(server, UriKind.Absolute, out var uri) || uri.Scheme is not ("https" or "http"))
            {
                throw new ManifestException($"--server '{server}' is not a URL: write it with its scheme, e.g. https://{server}");
            }

            var token = result.GetValue(CommonOptions.Token);
            if (token is null && result.GetValue(tokenFile) is { } file)
            {
                token = File.Exists(file) ? (await File.ReadAllTextAsync(file, ct)).Trim() : throw new ManifestException($"--token-file {file}: no such file");
            }

            if (string.IsNullOrEmpty(token))
            {
                throw new ManifestException("a join token is required: --token-file FILE or --token TOKEN (`outpost token create` on the server makes one)");
            }

            var args = new List<string> { "--name", result.GetValue(name)!, "--data-dir", result.GetValue(dataDir)!, "--gateway", result.GetValue(gateway)! };
            if (result.GetValue(labels) is { Length: > 0 } l)
            {
                args.AddRange(["--labels", l]);
            }

            var settings = new (string Name, string Value)[]
            {
                ("OUTPOST_SERVER", server),
                ("OUTPOST_TOKEN", token),
                ("OUTPOST_AGENT_ARGS", Words(args)),
                ("OUTPOST_LIB_DIR", LibDir),
            };
            return await InstallAsync("agent", "Outpost agent: this edge node's apps, synced with the control plane", settings, "OUTPOST_AGENT_ARGS",
                result.GetValue(DryRun), result.GetValue(Root), ct);
        }));
        return command;
    }

    public static Command ServerInstall()
    {
        var listen = new Option<string>("--listen") { Description = "Address to listen on (HOST:PORT)", DefaultValueFactory = _ => "0.0.0.0:7440" };
        var dataDir = new Option<string>("--data-dir") { Description = "The server's store and config", DefaultValueFactory = _ => "/var/lib/outpost/server" };
        var command = new Command("install", "Install this binary as the control plane's service: /usr/local/bin/outpost, outpost-server.service and /etc/default/outpost-server")
        {
            listen, dataDir, DryRun, Root,
        };
        command.SetAction((result, ct) => ClientCommands.Run(async () =>
        {
            var settings = new (string Name, string Value)[]
            {
                ("OUTPOST_SERVER_ARGS", Words(["--listen", result.GetValue(listen)!, "--data-dir", result.GetValue(dataDir)!])),
                ("OUTPOST_LIB_DIR", LibDir),
            };
            return await InstallAsync("server", "Outpost server: the control plane of an edge fleet", settings, "OUTPOST_SERVER_ARGS",
                result.GetValue(DryRun), result.GetValue(Root), ct);
        }));
        return command;
    }

    public static Command Uninstall()
    {
        var command = new Command("uninstall", "Remove what `install` wrote: the services' units and settings, and /usr/local/bin/outpost (data directories stay)")
        {
            DryRun, Root,
        };
        command.SetAction((result, ct) => ClientCommands.Run(() =>
        {
            var root = result.GetValue(Root) ?? "/";
            var dryRun = result.GetValue(DryRun);
            var files = Roles.SelectMany(role => new[] { UnitPath(role), EnvPath(role) }).Append(BinaryPath)
                .Select(p => Under(root, p)).Where(File.Exists).ToList();
            if (files.Count == 0)
            {
                Console.WriteLine("nothing to remove: no Outpost service is installed" + (root == "/" ? "" : $" under {root}"));
                return Task.FromResult(0);
            }

            if (!dryRun && root == "/" && SystemdRuns())
            {
                foreach (var role in Roles.Where(r => File.Exists(UnitPath(r))))
                {
                    Systemctl("disable", "--now", $"outpost-{role}.service");
                }
            }

            foreach (var file in files)
            {
                if (dryRun)
                {
                    Console.WriteLine($"would remove {file}");
                    continue;
                }

                try
                {
                    File.Delete(file);
                }
                catch (UnauthorizedAccessException)
                {
                    throw new ManifestException($"cannot remove {file}: permission denied (run uninstall as root)");
                }

                Console.WriteLine($"removed {file}");
            }

            if (!dryRun && root == "/" && SystemdRuns())
            {
                Systemctl("daemon-reload");
            }

            Console.WriteLine("data directories (/var/lib/outpost) are kept: remove them yourself to forget this node's state");
            return Task.FromResult(0);
        }));
        return command;
    }

    /// <summary>The unit of a role: the binary with its settings' arguments, restarted whatever happens.</summary>
    internal static string Unit(string role, string description, string argsVariable) => $"""
        [Unit]
        Description={description}
        Wants=network-online.target
        After=network-online.target

        [Service]
        Type=exec
        EnvironmentFile=/etc/default/outpost-{role}
        ExecStart={BinaryPath} {role} ${argsVariable}
        Restart=always
        RestartSec=5s
        # Every gateway connection, sync stream and open file counts against it.
        LimitNOFILE=1048576
        # SIGTERM lets it finish what it is doing (flush the outbox, close the stream).
        KillMode=mixed
        TimeoutStopSec=30s

        [Install]
        WantedBy=multi-user.target

        """;

    /// <summary>The settings file: one NAME=value per line, values quoted for systemd.</summary>
    internal static string Settings(string role, IEnumerable<(string Name, string Value)> settings)
    {
        var sb = new StringBuilder();
        sb.AppendLine(CultureInfo.InvariantCulture, $"# Settings of outpost-{role}.service, written by `outpost {role} install`. Edit, then");
        sb.AppendLine(CultureInfo.InvariantCulture, $"# `systemctl restart outpost-{role}`. Readable by root only{(role == "agent" ? ": it holds the join token" : "")}.");
        foreach (var (name, value) in settings)
        {
            sb.AppendLine(CultureInfo.InvariantCulture, $"{name}={Quote(value)}");
        }

        return sb.ToString();
    }

    private static async Task<int> InstallAsync(string role, string description, IEnumerable<(string Name, string Value)> settings, string argsVariable,
        bool dryRun, string? rootOption, CancellationToken ct)
    {
        var root = rootOption ?? "/";
        var self = Environment.ProcessPath;
        var selfIsRelease = self is not null && Path.GetFileNameWithoutExtension(self) != "dotnet";
        var plan = new List<PlannedFile>
        {
            new(Under(root, UnitPath(role)), Encoding.UTF8.GetBytes(Unit(role, description, argsVariable)), UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead),
            new(Under(root, EnvPath(role)), Encoding.UTF8.GetBytes(Settings(role, settings)), UnixFileMode.UserRead | UnixFileMode.UserWrite),
        };
        if (selfIsRelease && Path.GetFullPath(self!) != Under(root, BinaryPath))
        {
            plan.Add(new(Under(root, BinaryPath), null, (UnixFileMode)0b111_101_101, self));
        }

        if (dryRun)
        {
            foreach (var file in plan)
            {
                if (file.CopyFrom is not null)
                {
                    Console.WriteLine($"# would copy {file.CopyFrom} to {file.Path} (mode 0755)");
                    continue;
                }

                Console.WriteLine($"# would write {file.Path} (mode {Convert.ToString((int)file.Mode, 8).PadLeft(4, '0')})");
                Console.Write(Encoding.UTF8.GetString(file.Content!));
                Console.WriteLine();
            }

            if (!selfIsRelease)
            {
                Console.WriteLine($"# and copy the release binary to {Under(root, BinaryPath)}: this one runs on dotnet, so a real install needs ./build.sh's dist/RID/outpost");
            }

            Console.WriteLine("# dry run: nothing was written");
            return 0;
        }

        if (!selfIsRelease)
        {
            throw new ManifestException($"install copies this binary to {BinaryPath}, but this one runs on dotnet: run install from the release binary (./build.sh makes dist/linux-x64/outpost and dist/linux-arm64/outpost)");
        }

        await WriteAllOrNothingAsync(plan, ct);
        foreach (var file in plan)
        {
            Console.WriteLine($"wrote {file.Path}");
        }

        if (root == "/" && SystemdRuns())
        {
            Systemctl("daemon-reload");
            Systemctl("enable", "--now", $"outpost-{role}.service");
            Console.WriteLine($"outpost-{role}.service is enabled and started: `systemctl status outpost-{role}`, `journalctl -u outpost-{role}`");
        }
        else
        {
            Console.WriteLine($"systemd is not running {(root == "/" ? "here" : $"under {root}")}: once it is, `systemctl enable --now outpost-{role}` starts it");
        }

        return 0;
    }

    /// <summary>
    /// Writes every file beside its target, then renames them all into place; if any cannot be
    /// written, the ones written so far are removed and the error names the path.
    /// </summary>
    internal static async Task WriteAllOrNothingAsync(IReadOnlyList<PlannedFile> plan, CancellationToken ct)
    {
        if (OperatingSystem.IsWindows())
        {
            throw new ManifestException("install writes systemd units and Unix file modes: Linux only");
        }

        var staged = new List<(string Temporary, string Target)>();
        try
        {
            foreach (var file in plan)
            {
                var temporary = $"{file.Path}.outpost-install.tmp";
                try
                {
                    Directory.CreateDirectory(Path.GetDirectoryName(file.Path)!);
                    var options = new FileStreamOptions { Mode = FileMode.Create, Access = FileAccess.Write, UnixCreateMode = file.Mode };
                    await using (var target = new FileStream(temporary, options))
                    {
                        if (file.CopyFrom is { } source)
                        {
                            await using var from = File.OpenRead(source);
                            await from.CopyToAsync(target, ct);
                        }
                        else
                        {
                            await target.WriteAsync(file.Content, ct);
                        }
                    }

                    File.SetUnixFileMode(temporary, file.Mode);
                    staged.Add((temporary, file.Path));
                }
                catch (UnauthorizedAccessException)
                {
                    throw new ManifestException($"cannot write {file.Path}: permission denied (install as root, e.g. with sudo); nothing was installed");
                }
                catch (IOException ex)
                {
                    throw new ManifestException($"cannot write {file.Path}: {ex.Message}; nothing was installed");
                }
            }

            foreach (var (temporary, target) in staged)
            {
                File.Move(temporary, target, overwrite: true);
            }

            staged.Clear();
        }
        finally
        {
            foreach (var (temporary, _) in staged)
            {
                File.Delete(temporary);
            }
        }
    }

    private static string UnitPath(string role) => $"/etc/systemd/system/outpost-{role}.service";

    private static string EnvPath(string role) => $"/etc/default/outpost-{role}";

    private static string Under(string root, string path) => Path.GetFullPath(Path.Combine(root, path.TrimStart('/')));

    /// <summary>A value as systemd reads it in an EnvironmentFile or as one word of $VAR: quoted when it has to be.</summary>
    private static string Quote(string value) =>
        value.Length > 0 && value.All(c => char.IsAsciiLetterOrDigit(c) || "-_./:=,@+%".Contains(c, StringComparison.Ordinal))
            ? value
            : "\"" + value.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\"", "\\\"", StringComparison.Ordinal) + "\"";

    /// <summary>Arguments for an unbraced $VAR in ExecStart, which systemd splits at whitespace only.</summary>
    private static string Words(IEnumerable<string> args)
    {
        var list = args.ToList();
        return list.FirstOrDefault(a => a.Length == 0 || a.Any(char.IsWhiteSpace)) is { } bad
            ? throw new ManifestException($"'{bad}': a service's settings cannot hold an empty value or one with spaces")
            : string.Join(' ', list);
    }

    private static bool SystemdRuns() => Directory.Exists("/run/systemd/system");

    private static void Systemctl(params string[] args)
    {
        using var process = System.Diagnostics.Process.Start("systemctl", args);
        process.WaitForExit();
        if (process.ExitCode != 0)
        {
            throw new ManifestException($"systemctl {string.Join(' ', args)} exited with {process.ExitCode}");
        }
    }
}
