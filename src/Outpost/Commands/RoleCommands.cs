using System.CommandLine;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Json.Nodes;
using Outpost.Agent.Hosting;
using Outpost.Client;
using Outpost.Core.Api;
using Outpost.Core.Manifests;
using Outpost.Core.Selectors;
using Outpost.Server.Hosting;

namespace Outpost.Commands;

/// <summary>The long-running roles: server, agent, and a whole local fleet with up.</summary>
internal static class RoleCommands
{
    private static string Home => Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);

    public static Command Server()
    {
        var dataDir = new Option<string>("--data-dir") { Description = "Store and config directory", DefaultValueFactory = _ => Path.Combine(Home, ".outpost", "server") };
        var listen = new Option<string>("--listen") { Description = "Address to listen on (HOST:PORT; port 0 picks one)", DefaultValueFactory = _ => "127.0.0.1:7440" };
        var history = new Option<int>("--history-retention") { Description = "Changes kept for incremental reconnects; nodes further behind get a full snapshot", DefaultValueFactory = _ => 10_000 };
        var lease = new Option<string>("--node-lease") { Description = "A node whose last heartbeat is older than this is NotReady (Offline once its stream is gone too)", DefaultValueFactory = _ => "30s" };
        var tlsCert = new Option<string?>("--tls-cert") { Description = "Serve this certificate (PEM, with its chain) instead of one from the server's own CA" };
        var tlsKey = new Option<string?>("--tls-key") { Description = "The key of --tls-cert (PEM)" };
        var insecure = new Option<bool>("--insecure-http") { Description = "Serve cleartext HTTP/2 instead of TLS (tokens travel in the clear: only behind something that encrypts)" };
        var revisionHistory = new Option<int>("--revision-history") { Description = "Revisions kept per app for rollout history and undo", DefaultValueFactory = _ => 10 };
        var nodeCertTtl = new Option<string>("--node-cert-ttl") { Description = "Lifetime of node certificates; agents renew with a third left", DefaultValueFactory = _ => "30d" };
        var metricsRetention = new Option<string>("--metrics-retention") { Description = "How long app and node metrics are kept (one-minute resolution)", DefaultValueFactory = _ => "24h" };
        var logRetention = new Option<string>("--log-retention") { Description = "How long logs shipped by the nodes are kept", DefaultValueFactory = _ => "7d" };
        var alertInterval = new Option<string>("--alert-interval") { Description = "How often alert rules are evaluated", DefaultValueFactory = _ => "10s" };
        var ingress = new Option<string?>("--ingress") { Description = "Serve public ingress here (HOST:PORT, plain HTTP, no token): services whose apps set spec.expose.ingress" };
        var datastore = new Option<string?>("--datastore") { Description = "Keep the store in PostgreSQL (postgres://USER:PASSWORD@HOST:PORT/DB) instead of SQLite in --data-dir; further replicas on the same database take the first one's --server-token-file" };
        var serverToken = new Option<string?>("--server-token-file") { Description = "The token sealing the CA and secrets key kept in --datastore (default: DATA/server-token, made on first start); every server on a datastore needs the first one's" };
        var command = new Command("server", "Run the control plane: REST API, agent sync endpoint, store")
        {
            dataDir, listen, history, lease, tlsCert, tlsKey, insecure, nodeCertTtl, revisionHistory, metricsRetention, logRetention, alertInterval, ingress, datastore, serverToken,
        };
        command.SetAction(async (result, ct) => await RunUntilStoppedAsync(async stop =>
        {
            await using var server = OutpostServer.Create(new ServerOptions
            {
                DataDir = Path.GetFullPath(result.GetValue(dataDir)!),
                Listen = result.GetValue(listen)!,
                HistoryRetention = result.GetValue(history),
                NodeLease = Duration(result.GetValue(lease)!, "--node-lease"),
                TlsCertFile = result.GetValue(tlsCert) is { } cert ? Path.GetFullPath(cert) : null,
                TlsKeyFile = result.GetValue(tlsKey) is { } key ? Path.GetFullPath(key) : null,
                InsecureHttp = result.GetValue(insecure),
                NodeCertificateLifetime = Duration(result.GetValue(nodeCertTtl)!, "--node-cert-ttl"),
                RevisionHistory = result.GetValue(revisionHistory),
                MetricsRetention = Duration(result.GetValue(metricsRetention)!, "--metrics-retention"),
                LogRetention = Duration(result.GetValue(logRetention)!, "--log-retention"),
                AlertInterval = Duration(result.GetValue(alertInterval)!, "--alert-interval"),
                Ingress = result.GetValue(ingress),
                Datastore = result.GetValue(datastore),
                ServerTokenFile = result.GetValue(serverToken),
            });
            await server.StartAsync(stop);
            Native.StartupImage.Release();
            Console.WriteLine($"server: {server.Url}");
            if (server.IngressUrl is { } ingressUrl)
            {
                Console.WriteLine($"ingress: {ingressUrl}");
            }

            Console.WriteLine($"config: {server.ConfigPath} (export OUTPOST_CONFIG={server.ConfigPath})");
            Console.WriteLine($"kubectl: export KUBECONFIG={server.KubeconfigPath}");
            await WaitAsync(stop);
            await server.StopAsync(CancellationToken.None);
            return 0;
        }));
        return command;
    }

    public static Command Agent()
    {
        // --server and --token are the root's recursive options; for the agent they mean the
        // control plane's URL (else OUTPOST_SERVER, as for the client) and a join token (else
        // --token-file, else OUTPOST_TOKEN). OUTPOST_URL, its old name, still works unlisted.
        var server = CommonOptions.Server;
        var token = CommonOptions.Token;
        var name = new Option<string>("--name") { Description = "Node name (default: the host name)", DefaultValueFactory = _ => Environment.MachineName.ToLowerInvariant() };
        var labels = new Option<string?>("--labels") { Description = "Node labels, k=v,k2=v2, used by apps' placement.nodeSelector" };
        var dataDir = new Option<string?>("--data-dir") { Description = "Local state directory (default: ~/.outpost/agent-NAME)" };
        var gateway = new Option<string>("--gateway") { Description = "Local HTTP gateway address (HOST:PORT)", DefaultValueFactory = _ => "127.0.0.1:8080" };
        var maxInstances = new Option<int>("--max-instances") { Description = "Wasm instances that may run at once on this node (pool slots)", DefaultValueFactory = _ => 256 };
        var maxMemory = new Option<int>("--max-instance-memory") { Description = "Most memory one instance may use, MiB; apps asking for more are refused on this node", DefaultValueFactory = _ => 256 };
        var outboxQuota = new Option<string>("--outbox-quota") { Description = "Most payload the outbox keeps while the cloud is unreachable, e.g. 256MiB, 2GiB", DefaultValueFactory = _ => "256MiB" };
        var outboxOverflow = new Option<string>("--outbox-overflow") { Description = "At the quota: dropOldest (keep the newest) or rejectNew; every loss is counted and reported", DefaultValueFactory = _ => "dropOldest" };
        outboxOverflow.AcceptOnlyFromAmong("dropOldest", "rejectNew");
        var keepalive = new Option<string>("--keepalive") { Description = "Ping the server after this much silence, and drop the link if the ping is not answered as long, at most 5 s (finds a hung server; a dead link is found by the kernel within 45 s)", DefaultValueFactory = _ => "60s" };
        var heartbeat = new Option<string>("--heartbeat") { Description = "How often the agent beats while connected; keep it well under the server's --node-lease", DefaultValueFactory = _ => "10s" };
        var tokenFile = new Option<string?>("--token-file") { Description = "Read the join token from this file (keeps it out of the process list, unlike --token)" };
        var logQuota = new Option<string>("--log-quota") { Description = "Log lines kept while they wait to be shipped; past it the oldest are dropped and counted (e.g. 16MiB)", DefaultValueFactory = _ => "16MiB" };
        var serviceAddresses = new Option<bool>("--service-addresses") { Description = "Accept connections on each mesh service's address (127.77.x.y:PORT) and carry them to an endpoint", DefaultValueFactory = _ => true };
        var dns = new Option<string?>("--dns") { Description = "Answer DNS here (HOST:PORT, UDP) for NAME.mesh with the service's address" };
        var meshListen = new Option<string?>("--mesh-listen") { Description = "Take direct wires from nodes of this node's site here (HOST:PORT, mutual TLS); default: the gateway's host on a free port; 'off' for none" };
        var onnxRuntime = new Option<string?>("--onnxruntime") { Description = "ONNX Runtime for apps that run inference (WASI-NN): the library's path, or 'off'; default: libonnxruntime.so next to outpost or on LD_LIBRARY_PATH" };
        var compiler = new Option<string>("--compiler") { Description = "Where modules are compiled: child (a child process, so compiling never grows the agent's memory; the release binary's default), in-process (the JIT build's default), or auto", DefaultValueFactory = _ => "auto" };
        compiler.AcceptOnlyFromAmong("auto", "child", "in-process");
        var meshAdvertise = new Option<string?>("--mesh-advertise") { Description = "The HOST:PORT nodes of the site dial for direct wires, when it is not the bound address (NAT, a wildcard bind)" };
        var command = new Command("agent", "Run an edge agent: join the server (--server URL, or URL1,URL2,… for replicas, with --token-file FILE, --token JOIN-TOKEN or OUTPOST_TOKEN; OUTPOST_SERVER for the URL), sync, serve apps on the gateway")
        {
            name, labels, dataDir, gateway, tokenFile, maxInstances, maxMemory, outboxQuota, outboxOverflow, keepalive, heartbeat, logQuota, serviceAddresses, dns, meshListen, meshAdvertise, compiler, onnxRuntime,
        };
        command.SetAction(async (result, ct) => await RunUntilStoppedAsync(async stop =>
        {
            var url = result.GetValue(server) ?? Environment.GetEnvironmentVariable("OUTPOST_SERVER") ?? Environment.GetEnvironmentVariable("OUTPOST_URL")
                ?? throw new ManifestException("--server (or OUTPOST_SERVER) is required: the control plane's URL");
            // Replicas of one control plane: URL1,URL2,… tried in turn.
            var urls = url.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            if (urls.Length == 0)
            {
                throw new ManifestException("--server names no URL");
            }

            var joinToken = result.GetValue(token);
            if (joinToken is null && result.GetValue(tokenFile) is { } file)
            {
                joinToken = File.Exists(file) ? File.ReadAllText(file).Trim() : throw new ManifestException($"--token-file {file}: no such file");
            }
            var nodeName = result.GetValue(name)!;
            var options = new AgentOptions
            {
                ServerUrl = urls[0],
                OtherServerUrls = urls[1..],
                JoinToken = joinToken ?? Environment.GetEnvironmentVariable("OUTPOST_TOKEN"),
                NodeName = nodeName,
                Labels = ParseLabels(result.GetValue(labels)),
                DataDir = Path.GetFullPath(result.GetValue(dataDir) ?? Path.Combine(Home, ".outpost", "agent-" + nodeName)),
                Gateway = result.GetValue(gateway)!,
                MaxInstances = result.GetValue(maxInstances),
                MaxInstanceMemoryMiB = result.GetValue(maxMemory),
                OnnxRuntime = result.GetValue(onnxRuntime),
                OutboxQuotaBytes = ParseBytes(result.GetValue(outboxQuota)!, "--outbox-quota"),
                LogQuotaBytes = ParseBytes(result.GetValue(logQuota)!, "--log-quota"),
                KeepAlive = Duration(result.GetValue(keepalive)!, "--keepalive"),
                HeartbeatInterval = Duration(result.GetValue(heartbeat)!, "--heartbeat"),
                OutboxOverflow = result.GetValue(outboxOverflow) == "rejectNew" ? Outpost.Agent.State.OverflowPolicy.RejectNew : Outpost.Agent.State.OverflowPolicy.DropOldest,
                ServiceAddresses = result.GetValue(serviceAddresses),
                Dns = result.GetValue(dns),
                MeshListen = result.GetValue(meshListen),
                MeshAdvertise = result.GetValue(meshAdvertise),
                CompileInChild = result.GetValue(compiler) switch
                {
                    "child" => true,
                    "in-process" => false,
                    _ => null,
                },
            };
            await using var agent = OutpostAgent.Create(options);
            await agent.StartAsync(stop);
            Native.StartupImage.Release();
            Console.WriteLine($"node {nodeName}: {agent.GatewayUrl}");
            await Task.WhenAny(WaitAsync(stop), agent.WaitForShutdownAsync(CancellationToken.None));
            await agent.StopAsync(CancellationToken.None);
            if (agent.FatalError is { } fatal)
            {
                Console.Error.WriteLine($"error: {fatal}");
                return 2;
            }

            return 0;
        }));
        return command;
    }

    public static Command Up()
    {
        var agents = new Option<int>("--agents") { Description = "How many agents (edge-1..edge-N)", DefaultValueFactory = _ => 2 };
        var dataDir = new Option<string>("--data-dir") { Description = "Where the fleet keeps its state", DefaultValueFactory = _ => Path.Combine(Home, ".outpost", "fleet") };
        var serverPort = new Option<int>("--server-port") { Description = "Server port", DefaultValueFactory = _ => 7440 };
        var gatewayPort = new Option<int>("--gateway-port") { Description = "First gateway port; edge-K listens on G+K-1", DefaultValueFactory = _ => 8080 };
        var manifests = new Option<string?>("--manifests") { Description = "Manifests to apply (default: samples/manifests)" };
        var command = new Command("up", "Run a local fleet: a server and N agents on loopback, with the samples deployed") { agents, dataDir, serverPort, gatewayPort, manifests };
        command.SetAction(async (result, ct) => await RunUntilStoppedAsync(async stop =>
        {
            var count = result.GetValue(agents);
            if (count is < 1 or > 64)
            {
                throw new ManifestException("--agents must be between 1 and 64");
            }

            var dir = Path.GetFullPath(result.GetValue(dataDir)!);
            var samples = result.GetValue(manifests) ?? FindSamples() ?? UnpackSamples(dir);

            await using var server = OutpostServer.Create(new ServerOptions
            {
                DataDir = Path.Combine(dir, "server"),
                Listen = $"127.0.0.1:{result.GetValue(serverPort)}",
            });
            await server.StartAsync(stop);
            var config = ClientConfig.Parse(await File.ReadAllTextAsync(server.ConfigPath, stop), server.ConfigPath);
            var fleetConfig = Path.Combine(dir, "config.yaml");
            var userConfig = AdoptUserConfig(fleetConfig, config);

            using var client = new ApiClient(config.Server, config.Token, config.CertificateAuthorityPem);
            var joinToken = (string)(await client.PostAsync("apis/outpost.dev/v1/tokens", new JsonObject { ["description"] = "outpost up" }, stop))["token"]!;
            var set = ManifestSet.Load([samples]);
            var items = await set.ResolveModulesAsync(client, stop);
            await client.PostAsync("apis/outpost.dev/v1/apply", new JsonObject { ["kind"] = "List", ["apiVersion"] = "v1", ["items"] = items }, stop);

            var running = new List<OutpostAgent>();
            try
            {
                for (var i = 1; i <= count; i++)
                {
                    var agent = OutpostAgent.Create(new AgentOptions
                    {
                        ServerUrl = config.Server,
                        JoinToken = joinToken,
                        NodeName = $"edge-{i}",
                        Labels = new Dictionary<string, string> { ["site"] = "local", ["edge"] = i.ToString(CultureInfo.InvariantCulture) },
                        DataDir = Path.Combine(dir, $"edge-{i}"),
                        Gateway = $"127.0.0.1:{result.GetValue(gatewayPort) + i - 1}",
                        // One host: the service addresses (the same on every node) are edge-1's to take.
                        ServiceAddresses = i == 1,
                    });
                    running.Add(agent);
                    await agent.StartAsync(stop);
                }

                Native.StartupImage.Release();
                Console.WriteLine($"server: {config.Server}");
                for (var i = 0; i < running.Count; i++)
                {
                    Console.WriteLine($"node edge-{i + 1}: {running[i].GatewayUrl}");
                }

                Console.WriteLine(userConfig
                    ? $"config: {fleetConfig} (also {Connection.UserConfigPath}, the default)"
                    : $"config: {fleetConfig}; {Connection.UserConfigPath} is yours and was left as it is: export OUTPOST_CONFIG={fleetConfig} (or pass --config) to talk to this fleet");
                Console.WriteLine($"kubectl: export KUBECONFIG={server.KubeconfigPath}");
                // As the user typed it: the repository's launcher says how it was called (./outpost).
                var me = Environment.GetEnvironmentVariable("OUTPOST_COMMAND") is { Length: > 0 } typed ? typed : "outpost";
                Console.WriteLine($"fleet up; try `{me} get nodes` and curl a node's /hello. Ctrl-C stops everything.");
                await WaitAsync(stop);
            }
            finally
            {
                foreach (var agent in running)
                {
                    await agent.StopAsync(CancellationToken.None);
                    await agent.DisposeAsync();
                }

                await server.StopAsync(CancellationToken.None);
            }

            return 0;
        }));
        return command;
    }

    /// <summary>
    /// The samples this binary carries (the release build has nothing beside it), written under
    /// the fleet's data dir, as the repository lays them out; returns their manifests directory.
    /// </summary>
    private static string UnpackSamples(string dataDir)
    {
        var assembly = typeof(RoleCommands).Assembly;
        var root = Path.Combine(dataDir, "samples");
        foreach (var name in assembly.GetManifestResourceNames().Where(n => n.StartsWith("samples/", StringComparison.Ordinal)))
        {
            var path = Path.Combine(dataDir, name.Replace('\\', '/'));
            Directory.CreateDirectory(Path.GetDirectoryName(path)!);
            using var source = assembly.GetManifestResourceStream(name)!;
            using var target = File.Create(path);
            source.CopyTo(target);
        }

        var manifests = Path.Combine(root, "manifests");
        return Directory.Exists(manifests) ? manifests : throw new ManifestException("samples/manifests not found: pass --manifests DIR");
    }

    private static string? FindSamples()
    {
        foreach (var start in new[] { Environment.CurrentDirectory, AppContext.BaseDirectory })
        {
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
            {
                var candidate = Path.Combine(dir.FullName, "samples", "manifests");
                if (Directory.Exists(candidate))
                {
                    return candidate;
                }
            }
        }

        return null;
    }

    private static TimeSpan Duration(string text, string flag) =>
        Core.Resources.Durations.TryParse(text, out var value) && value >= TimeSpan.FromMilliseconds(100)
            ? value
            : throw new ManifestException($"{flag} '{text}' is not a duration of at least 100ms (e.g. 500ms, 15s, 1m)");

    /// <summary>Sizes as flags write them: 512KiB, 256MiB, 2GiB, or plain bytes.</summary>
    internal static long ParseBytes(string text, string flag)
    {
        var units = new (string Suffix, long Factor)[] { ("GiB", 1L << 30), ("MiB", 1L << 20), ("KiB", 1L << 10), ("B", 1) };
        foreach (var (suffix, factor) in units)
        {
            if (text.EndsWith(suffix, StringComparison.Ordinal) && long.TryParse(text[..^suffix.Length], NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n > 0)
            {
                return n * factor;
            }
        }

        return long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var bytes) && bytes > 0
            ? bytes
            : throw new ManifestException($"{flag} '{text}' is not a size: use e.g. 512KiB, 256MiB or 2GiB");
    }

    private static Dictionary<string, string> ParseLabels(string? text)
    {
        try
        {
            return Labels.ParseList(text);
        }
        catch (FormatException ex)
        {
            throw new ManifestException($"--labels: {ex.Message}");
        }
    }

    /// <summary>
    /// Writes the fleet's client config, and makes it the default (~/.outpost/config.yaml) only
    /// when there was none or the one there is this fleet's own from an earlier `up`: a user's
    /// config may point at their real server, and an `up` must never take that away.
    /// </summary>
    private static bool AdoptUserConfig(string fleetConfig, ClientConfig config)
    {
        var previous = File.Exists(fleetConfig) ? File.ReadAllText(fleetConfig) : null;
        Connection.Write(fleetConfig, config);
        var user = Connection.UserConfigPath;
        var current = File.Exists(user) ? File.ReadAllText(user) : null;
        if (current is not null && current != previous && current != config.ToYaml())
        {
            return false;
        }

        Connection.Write(user, config);
        return true;
    }

    private static Task WaitAsync(CancellationToken stop) => Task.Delay(Timeout.Infinite, stop).ContinueWith(_ => { }, TaskScheduler.Default);

    /// <summary>Runs a role until Ctrl-C or SIGTERM, then lets it stop cleanly.</summary>
    private static async Task<int> RunUntilStoppedAsync(Func<CancellationToken, Task<int>> role)
    {
        using var stop = new CancellationTokenSource();
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, context =>
        {
            context.Cancel = true;
            stop.Cancel();
        });
        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, context =>
        {
            context.Cancel = true;
            stop.Cancel();
        });
        try
        {
            return await ClientCommands.Run(() => role(stop.Token));
        }
        catch (ArgumentException ex)
        {
            Console.Error.WriteLine($"error: {ex.Message}");
            return 2;
        }
        catch (IOException ex) when (ex.Message.Contains("address already in use", StringComparison.OrdinalIgnoreCase))
        {
            Console.Error.WriteLine($"error: {ex.Message}");
            return 2;
        }
    }
}
