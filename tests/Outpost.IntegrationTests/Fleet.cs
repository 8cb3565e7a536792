using System.Net;
using System.Text.Json.Nodes;

namespace Outpost.IntegrationTests;

/// <summary>A test's own fleet: a real server process and agent processes on 127.0.0.1:0 ports.</summary>
public sealed class Fleet : IAsyncDisposable
{
    private readonly List<OutpostProcess> _processes = [];
    private HttpClient? _api;
    private string? _apiServer;

    public Fleet()
    {
        Root = Directory.CreateTempSubdirectory("outpost-it-").FullName;
        Home = Path.Combine(Root, "home");
        Directory.CreateDirectory(Home);
    }

    public string Root { get; }

    public string Home { get; }

    public string ServerUrl { get; private set; } = "";

    /// <summary>The client config of the server the client verbs and API calls go to (see <see cref="UseReplica"/>).</summary>
    public string ConfigPath => Path.Combine(Root, _serverDir, "config.yaml");

    /// <summary>The kubeconfig the server writes next to config.yaml.</summary>
    public string KubeconfigPath => Path.Combine(Root, _serverDir, "kubeconfig.yaml");

    private string _serverDir = "server";

    public OutpostProcess? Server { get; private set; }

    /// <summary>
    /// How long a wait gives the fleet to reach a state it reaches within a second or two on a
    /// quiet machine. Generous on purpose: the suite runs on shared 2-core machines with the cores
    /// oversubscribed (`./test.sh --stress`), where processes that JIT-compile can take many
    /// seconds; a passing wait returns as soon as its condition holds, so only a failure waits it out.
    /// </summary>
    public static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    /// <summary>How long a server or agent process may take to start serving (it JIT-compiles a lot).</summary>
    public static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(120);

    /// <summary>
    /// Server flags for tests of node states: a lease short enough to expire within the test, and
    /// long enough that a node starved of CPU for a moment on a loaded box does not miss it.
    /// </summary>
    public static readonly string[] ShortLease = ["--node-lease", "3s"];

    /// <summary>Agent flags to go with <see cref="ShortLease"/>: twelve beats per lease, so a node must miss eleven in a row to go NotReady.</summary>
    public static readonly string[] FastHeartbeat = ["--heartbeat", "250ms"];

    /// <summary>Heartbeats per <see cref="ShortLease"/> at <see cref="FastHeartbeat"/>.</summary>
    public const int BeatsPerLease = 12;

    /// <summary>One request to a gateway or the API: a loaded box can stall one for seconds.</summary>
    public static readonly TimeSpan RequestTimeout = TimeSpan.FromSeconds(30);

    public static HttpClient Http { get; } = new() { Timeout = RequestTimeout };

    /// <summary>Starts the server; a restart passes the previous URL's port so agents find it again.</summary>
    public async Task StartServerAsync(int port = 0, params string[] extra)
    {
        Server = Track(OutpostProcess.Start(Home, ["server", "--data-dir", Path.Combine(Root, "server"), "--listen", $"127.0.0.1:{port}", .. extra]));
        ServerUrl = await Server.WaitForLineAsync("server:", StartTimeout);
    }

    /// <summary>
    /// Starts another replica of the control plane (its own data dir under <paramref name="name"/>,
    /// on the first server's datastore and server token); returns it and its URL.
    /// </summary>
    public async Task<(OutpostProcess Process, string Url)> StartReplicaAsync(string name, params string[] extra)
    {
        var process = Track(OutpostProcess.Start(Home, ["server", "--data-dir", Path.Combine(Root, name), "--listen", "127.0.0.1:0",
            "--server-token-file", Path.Combine(Root, "server", "server-token"), .. extra]));
        return (process, await process.WaitForLineAsync("server:", StartTimeout));
    }

    /// <summary>Sends the client verbs and API calls to a replica started by <see cref="StartReplicaAsync"/> from now on.</summary>
    public void UseReplica(string name, OutpostProcess process, string url)
    {
        _serverDir = name;
        Server = process;
        ServerUrl = url;
    }

    public async Task<string> CreateJoinTokenAsync()
    {
        var (code, output) = await ClientAsync("token", "create");
        Assert.True(code == 0, output);
        return output.Trim();
    }

    /// <summary>Starts an agent and returns its gateway URL once it serves.</summary>
    public async Task<(OutpostProcess Process, string Gateway)> StartAgentAsync(string name, string token, string labels = "", string? dataDir = null, string? server = null, params string[] extra)
    {
        var process = Track(OutpostProcess.Start(Home, ["agent", "--server", server ?? ServerUrl, "--token", token, "--name", name,
            "--labels", labels, "--data-dir", dataDir ?? AgentDir(name), "--gateway", "127.0.0.1:0", .. extra]));
        var gateway = await process.WaitForLineAsync($"node {name}:", StartTimeout);
        return (process, gateway);
    }

    /// <summary>Starts an agent with some of its environment replaced (PATH, say); returns it and its gateway URL once it serves.</summary>
    public async Task<(OutpostProcess Process, string Gateway)> StartAgentWithEnvironmentAsync(string name, string token, IReadOnlyDictionary<string, string> environment)
    {
        string[] args = ["agent", "--server", ServerUrl, "--token", token, "--name", name, "--data-dir", AgentDir(name), "--gateway", "127.0.0.1:0"];
        var process = Track(OutpostProcess.Binary is { } binary
            ? OutpostProcess.StartProgram(Home, binary, args, environment)
            : OutpostProcess.StartProgram(Home, "dotnet", [OutpostProcess.OutpostDll, .. args], environment));
        return (process, await process.WaitForLineAsync($"node {name}:", StartTimeout));
    }

    public string AgentDir(string name) => Path.Combine(Root, name);

    public Task<(int ExitCode, string Output)> ClientAsync(params string[] args) =>
        OutpostProcess.RunAsync(Home, [.. args, "--config", ConfigPath]);

    public async Task<JsonObject> GetJsonAsync(params string[] args)
    {
        var (code, output) = await ClientAsync([.. args, "-o", "json"]);
        Assert.True(code == 0, output);
        return JsonNode.Parse(output)!.AsObject();
    }

    /// <summary>Writes a manifest and the hello module into a fresh directory; returns the manifest path.</summary>
    public string WriteManifest(string fileName, string yaml)
    {
        var dir = Path.Combine(Root, "manifests");
        Directory.CreateDirectory(dir);
        var hello = Path.Combine(dir, "hello.wasm");
        if (!File.Exists(hello))
        {
            File.Copy(Path.Combine(AppContext.BaseDirectory, "samples", "apps", "hello", "hello.wasm"), hello);
        }

        var path = Path.Combine(dir, fileName);
        File.WriteAllText(path, yaml);
        return path;
    }

    public static async Task<(HttpStatusCode Status, string Body)> GetAsync(string url)
    {
        try
        {
            using var response = await Http.GetAsync(url);
            return (response.StatusCode, await response.Content.ReadAsStringAsync());
        }
        catch (HttpRequestException ex)
        {
            return (0, ex.Message);
        }
        catch (TaskCanceledException ex) when (ex.InnerException is TimeoutException)
        {
            return (0, ex.Message); // the client's timeout on a stalled request: no answer yet, as for a refused one
        }
    }

    /// <summary>The hello sample as a manifest whose module path is next to it (see <see cref="WriteManifest"/>).</summary>
    public const string HelloApp = """
        apiVersion: outpost.dev/v1
        kind: Application
        metadata:
          name: hello
        spec:
          module:
            path: hello.wasm
          triggers:
            http:
              route: /hello
        """;

    /// <summary>Polls until the URL answers with exactly this body; fails with the last answer.</summary>
    public static Task WaitForBodyAsync(string url, string expected, TimeSpan? timeout = null) =>
        Eventually.UntilAsync(async () => (await GetAsync(url)).Body, body => body == expected, timeout ?? Patience, $"{url} to answer '{expected}'",
            body => body);

    /// <summary>Polls until the URL answers with the status; fails with the last answer.</summary>
    public static Task WaitForStatusAsync(string url, HttpStatusCode expected, TimeSpan timeout) =>
        Eventually.UntilAsync(() => GetAsync(url), r => r.Status == expected, timeout, $"{url} to answer {(int)expected}", r => $"{(int)r.Status} {r.Body}");

    /// <summary>Sends a request to the server's API with the admin token, over TLS verified against the CA in config.yaml.</summary>
    public async Task<HttpResponseMessage> ApiSendAsync(HttpRequestMessage request, bool authenticate = true)
    {
        ArgumentNullException.ThrowIfNull(request);
        var config = Core.Api.ClientConfig.Parse(await File.ReadAllTextAsync(ConfigPath), ConfigPath);
        if (_api is null || _apiServer != config.Server)
        {
            _api?.Dispose();
            var handler = new SocketsHttpHandler();
            if (config.CertificateAuthorityPem is { } ca)
            {
                handler.SslOptions = new System.Net.Security.SslClientAuthenticationOptions
                {
                    RemoteCertificateValidationCallback = Core.Security.TrustBundle.FromPem(ca).ServerValidator(),
                };
            }

            _api = new HttpClient(handler) { Timeout = RequestTimeout };
            _apiServer = config.Server;
        }

        request.Version = HttpVersion.Version20;
        request.VersionPolicy = HttpVersionPolicy.RequestVersionExact;
        if (authenticate)
        {
            request.Headers.Authorization = new("Bearer", config.Token);
        }

        return await _api.SendAsync(request);
    }

    /// <summary>The server's logged errors (an unhandled exception behind a 500, say), for a failure message.</summary>
    public string ServerErrors()
    {
        var lines = Server?.Output.Split('\n').Where(l => l.Contains("fail:", StringComparison.Ordinal) || l.Contains("crit:", StringComparison.Ordinal) || l.Contains("Exception", StringComparison.Ordinal)).TakeLast(20).ToList();
        return lines is { Count: > 0 } ? "\nthe server logged:\n" + string.Join('\n', lines) : "";
    }

    /// <summary>GET on the server's API with the admin token.</summary>
    public async Task<JsonObject> ApiGetAsync(string path)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, ServerUrl + path);
        using var response = await ApiSendAsync(request);
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, $"GET {path}: {(int)response.StatusCode} {text}{ServerErrors()}");
        return JsonNode.Parse(text)!.AsObject();
    }

    /// <summary>The server's /metrics text (Prometheus exposition), with the admin token.</summary>
    public async Task<string> ServerMetricsAsync()
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, ServerUrl + "/metrics");
        using var response = await ApiSendAsync(request);
        Assert.True(response.IsSuccessStatusCode, $"GET /metrics: {(int)response.StatusCode}");
        return await response.Content.ReadAsStringAsync();
    }

    /// <summary>A node's state as the API shows it, or null before it has joined.</summary>
    public async Task<string?> NodeStateAsync(string node) =>
        (string?)(await ApiGetAsync("/api/v1/nodes"))["items"]!.AsArray().FirstOrDefault(n => (string?)n!["metadata"]!["name"] == node)?["status"]?["state"];

    public Task WaitForNodeStateAsync(string node, string state) =>
        Eventually.UntilAsync(() => NodeStateAsync(node), s => s == state, Patience, $"node {node} to become {state}");

    /// <summary>Every ingested record of a topic, paged through the API in cursor order.</summary>
    public async Task<List<(string Node, long Sequence, string Text)>> ReadTopicAsync(string topic)
    {
        var records = new List<(string, long, string)>();
        var cursor = "0";
        while (true)
        {
            var page = await ApiGetAsync($"/apis/outpost.dev/v1/topics/{topic}/records?after={cursor}&limit=5000");
            var items = page["items"]!.AsArray();
            if (items.Count == 0)
            {
                return records;
            }

            records.AddRange(items.Select(i => ((string)i!["node"]!, (long)i["sequence"]!, (string?)i["text"] ?? "")));
            cursor = (string)page["metadata"]!["continue"]!;
        }
    }

    /// <summary>Stops every agent and server process (their files can then be inspected).</summary>
    public async Task DisposeAgentsAsync()
    {
        foreach (var process in _processes)
        {
            await process.StopAsync();
        }
    }

    private OutpostProcess Track(OutpostProcess process)
    {
        _processes.Add(process);
        return process;
    }

    public async ValueTask DisposeAsync()
    {
        _api?.Dispose();
        foreach (var process in _processes)
        {
            await process.DisposeAsync();
        }

        try
        {
            Directory.Delete(Root, recursive: true);
        }
        catch (IOException)
        {
            // A process may still hold a file for a moment; the temp dir is reclaimed anyway.
        }
    }
}
