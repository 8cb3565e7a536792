using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json.Nodes;

namespace Outpost.Bench;

/// <summary>
/// Rollback figures with real processes: a server and a fleet of real agents on this machine.
/// Fleet: from `rollout undo` (the API call) until every node reports the old revision serving;
/// baseline in the same run, the same fleet taking an ordinary new revision (apply to all
/// nodes reporting it). Edge: a revision that passes its probe and then answers 500, requests
/// one after another on one node's gateway: the node's own measure from the failed check to
/// the old revision in place (it reports it), and the client's, from sending the request whose
/// answer failed the check to the first 200 from the old revision (two requests); baseline, one
/// round trip on the healthy revision.
/// </summary>
internal static class RollbackBench
{
    public static async Task RunAsync(string outpostDll, string samples, int agents, int runs, int warmups)
    {
        var work = Directory.CreateTempSubdirectory("outpost-bench-rollback-").FullName;
        var processes = new List<Process>();
        try
        {
            var (home, serverUrl, config, token) = await Processes.StartServerAsync(processes, outpostDll, work);
            using var http = await Processes.ApiClientAsync(config);
            File.Copy(Path.Combine(samples, "apps", "hello", "hello.wasm"), Path.Combine(work, "hello.wasm"));
            var manifest = Path.Combine(work, "hello.yaml");
            async Task ApplyAsync(string greeting, string status, bool canary = false)
            {
                await File.WriteAllTextAsync(manifest, Manifest(greeting, status, canary));
                await Processes.RunAsync(outpostDll, home, "apply", "-f", manifest, "--config", config);
            }

            await ApplyAsync("one", "200");

            // The fleet: real agents, started ten at a time so the machine's two cores keep up.
            var gateways = new string[agents];
            foreach (var batch in Enumerable.Range(0, agents).Chunk(10))
            {
                await Task.WhenAll(batch.Select(async i =>
                {
                    var name = NodeName(i);
                    var agent = Processes.Start(processes, outpostDll, home, "agent", "--server", serverUrl, "--token", token, "--name", name,
                        "--data-dir", Path.Combine(work, name), "--gateway", "127.0.0.1:0", "--max-instances", "8");
                    gateways[i] = await Processes.LineAsync(agent, $"node {name}:");
                }));
                Console.Error.WriteLine($"[rollback] {batch[^1] + 1} agents up");
            }

            await WaitFleetAsync(http, serverUrl, agents, 1, TimeSpan.FromMinutes(5));
            Console.Error.WriteLine($"[rollback] {agents} nodes serve revision 1");

            // Warm-up, untimed: the agents' first updates compile (JIT) the update path, and on
            // two cores a hundred processes doing that at once would be measured instead.
            var generation = 1L;
            for (var i = 0; i < warmups; i++)
            {
                await ApplyAsync($"warm-{i}", "200");
                await WaitFleetAsync(http, serverUrl, agents, ++generation, TimeSpan.FromMinutes(5));
                Console.Error.WriteLine($"[rollback] warm-up {i + 1} of {warmups}");
            }

            // Baseline: an ordinary new revision (all at once) reaching the whole fleet.
            await ApplyAsync("two", "200");
            var apply = Stopwatch.StartNew(); // from the apply command returning, as `converge` measures
            await WaitFleetAsync(http, serverUrl, agents, ++generation, TimeSpan.FromMinutes(2));
            var applyMs = apply.Elapsed.TotalMilliseconds;
            Console.Error.WriteLine($"[rollback] apply to {agents} nodes: {applyMs:F0} ms");

            // Fleet: undo, RUNS times (each goes back one revision, as a new generation).
            var fleetMs = new List<double>();
            for (var run = 0; run < runs; run++)
            {
                var (serverCpu, agentsCpu) = CpuOf(processes);
                var undo = Stopwatch.StartNew();
                using (var response = await http.PostAsync(serverUrl + "/apis/outpost.dev/v1/applications/hello/rollback", new StringContent("{}", Encoding.UTF8, "application/json")))
                {
                    response.EnsureSuccessStatusCode();
                }

                generation++;
                await WaitFleetAsync(http, serverUrl, agents, generation, TimeSpan.FromMinutes(2));
                fleetMs.Add(undo.Elapsed.TotalMilliseconds);
                var (serverAfter, agentsAfter) = CpuOf(processes);
                Console.Error.WriteLine($"[rollback] undo {run + 1}: {fleetMs[^1]:F0} ms to {agents} nodes (CPU meanwhile: server {(serverAfter - serverCpu).TotalMilliseconds:F0} ms, agents {(agentsAfter - agentsCpu).TotalMilliseconds:F0} ms)");
            }

            // Edge: a bad revision as a canary on one node (the rest of the fleet stays calm),
            // rolled back by that node itself, RUNS times.
            var edgeMs = new List<double>();
            var swapMs = new List<double>();
            var rttMs = new List<double>();
            for (var run = 0; run < runs; run++)
            {
                var name = await FirstCanaryAsync(http, serverUrl);
                var gateway = gateways[int.Parse(name["edge-".Length..], CultureInfo.InvariantCulture) - 1] + "/hello";
                var healthy = await GetAsync(gateway); // the round trip on the healthy revision, the baseline
                for (var i = 0; i < 20; i++)
                {
                    var rtt = Stopwatch.StartNew();
                    healthy = await GetAsync(gateway);
                    rttMs.Add(rtt.Elapsed.TotalMilliseconds);
                }

                await ApplyAsync($"bad-{run}", "500", canary: true);
                generation++;
                await WaitAsync(async () => (await NodeAppAsync(http, serverUrl, name)) is { Generation: var g, State: "Ready" } && g == generation,
                    $"{name} to serve the bad revision", TimeSpan.FromMinutes(2));
                long lastError = 0, firstGood = 0;
                for (var i = 0; i < 100 && firstGood == 0; i++)
                {
                    var sent = Stopwatch.GetTimestamp();
                    var status = await GetAsync(gateway);
                    var at = Stopwatch.GetTimestamp();
                    if (status == HttpStatusCode.InternalServerError)
                    {
                        lastError = sent; // the request whose answer crossed the gate: the check and the swap happen inside it
                    }
                    else if (status == HttpStatusCode.OK && lastError != 0)
                    {
                        firstGood = at;
                    }
                }

                if (firstGood == 0)
                {
                    throw new InvalidOperationException($"{name} never went back to the old revision");
                }

                edgeMs.Add(Stopwatch.GetElapsedTime(lastError, firstGood).TotalMilliseconds);
                var app = await NodeAppAsync(http, serverUrl, name, waitForState: "Ready", previous: generation);
                if (app?.Message is { } message && message.LastIndexOf(" in ", StringComparison.Ordinal) is var at2 and > 0
                    && double.TryParse(message[(at2 + 4)..].Split(' ')[0], CultureInfo.InvariantCulture, out var swap))
                {
                    swapMs.Add(swap);
                }

                // The node told the server, which rolls the whole fleet back: wait for it before the next run.
                await WaitAsync(async () => await RolloutPhaseAsync(http, serverUrl) == "RolledBack", "the fleet to roll the bad revision back", TimeSpan.FromMinutes(2));
                await WaitFleetAsync(http, serverUrl, agents, null, TimeSpan.FromMinutes(2));
                Console.Error.WriteLine($"[rollback] edge {run + 1} on {name}: {edgeMs[^1]:F2} ms (node's own swap {(swapMs.Count > run ? swapMs[^1] : double.NaN):F3} ms)");
            }

            Console.WriteLine(FormattableString.Invariant(
                $"fleet of {agents} agents: undo reaches every node in a median {Median(fleetMs):F0} ms over {runs} runs; an ordinary apply took {applyMs:F0} ms"));
            Console.WriteLine(FormattableString.Invariant(
                $"edge: from the failed check to the old revision serving, as the node measures it, median {Median(swapMs):F3} ms over {runs} nodes; seen from a client, sending the request that failed the check to the first 200 from the old revision {Median(edgeMs):F2} ms (two requests; one healthy round trip is {Median(rttMs):F2} ms)"));
            Console.WriteLine(FormattableString.Invariant(
                $"rollback edge_ms={Median(swapMs):F3} fleet_ms={Median(fleetMs):F0} nodes={agents} edge_client_ms={Median(edgeMs):F2} edge_rtt_baseline_ms={Median(rttMs):F2} fleet_apply_baseline_ms={applyMs:F0}"));
        }
        finally
        {
            Processes.StopAll(processes, work);
        }
    }

    /// <summary>CPU time so far of the server (the first process) and of all agents together.</summary>
    private static (TimeSpan Server, TimeSpan Agents) CpuOf(List<Process> processes)
    {
        var total = TimeSpan.Zero;
        foreach (var process in processes.Skip(1))
        {
            process.Refresh();
            total += process.TotalProcessorTime;
        }

        processes[0].Refresh();
        return (processes[0].TotalProcessorTime, total);
    }

    private static string NodeName(int i) => FormattableString.Invariant($"edge-{i + 1:D3}");

    /// <summary>The node that goes first in the app's rollouts.</summary>
    private static async Task<string> FirstCanaryAsync(HttpClient http, string server)
    {
        using var response = await http.GetAsync(server + "/apis/outpost.dev/v1/applications/hello/rollout");
        return (string)JsonNode.Parse(await response.Content.ReadAsStringAsync())!["nodes"]![0]!["name"]!;
    }

    private static string Manifest(string greeting, string status, bool canary) => $"""
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
          env:
            GREETING: {greeting}
            STATUS: "{status}"
          limits:
            memoryMiB: 16
          readinessProbe:
            path: /hello/healthz
            expectStatus: 200
          rollout:
            strategy: {(canary ? "canary" : "allAtOnce")}{(canary ? "\n    steps:\n    - percent: 1\n      pause: 1h" : "")}
            progressDeadline: 10m
            errorRate:
              threshold: 0.5
              window: 1m
              minRequests: 5
        """;

    private static readonly HttpClient Gateway = new(new SocketsHttpHandler { PooledConnectionLifetime = Timeout.InfiniteTimeSpan }) { Timeout = TimeSpan.FromSeconds(10) };

    private static async Task<HttpStatusCode> GetAsync(string url)
    {
        using var response = await Gateway.GetAsync(url);
        await response.Content.ReadAsByteArrayAsync();
        return response.StatusCode;
    }

    private sealed record AppReport(long Generation, string State, string Message);

    private static async Task<AppReport?> NodeAppAsync(HttpClient http, string server, string node, string? waitForState = null, long previous = 0)
    {
        for (var i = 0; i < 200; i++)
        {
            using var response = await http.GetAsync($"{server}/api/v1/nodes/{node}");
            var app = JsonNode.Parse(await response.Content.ReadAsStringAsync())?["status"]?["apps"]?["hello"];
            var report = app is null ? null : new AppReport((long?)app["generation"] ?? 0, (string?)app["state"] ?? "", (string?)app["message"] ?? "");
            if (waitForState is null || report is not null && (report.State == "RolledBack" || report.State == waitForState && report.Generation != previous))
            {
                return report;
            }

            await Task.Delay(25);
        }

        return null;
    }

    private static async Task<string?> RolloutPhaseAsync(HttpClient http, string server)
    {
        using var response = await http.GetAsync(server + "/apis/outpost.dev/v1/applications/hello/rollout");
        return (string?)JsonNode.Parse(await response.Content.ReadAsStringAsync())?["status"]?["phase"];
    }

    /// <summary>Until every node reports the app Ready at <paramref name="generation"/> (null: at one same generation).</summary>
    private static Task WaitFleetAsync(HttpClient http, string server, int nodes, long? generation, TimeSpan timeout) =>
        WaitAsync(async () =>
        {
            using var response = await http.GetAsync(server + "/api/v1/nodes");
            var items = JsonNode.Parse(await response.Content.ReadAsStringAsync())!["items"]!.AsArray();
            var apps = items.Select(n => n!["status"]?["apps"]?["hello"]).ToList();
            return apps.Count == nodes && apps.All(a => (string?)a?["state"] == "Ready")
                && (generation is { } g ? apps.All(a => (long?)a!["generation"] == g) : apps.Select(a => (long?)a!["generation"]).Distinct().Count() == 1);
        }, $"all {nodes} nodes to serve revision {generation?.ToString(CultureInfo.InvariantCulture) ?? "(one)"}", timeout);

    private static async Task WaitAsync(Func<Task<bool>> condition, string what, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (!await condition())
        {
            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"timed out waiting for {what}");
            }

            await Task.Delay(100); // the node list of a whole fleet is not free to render: poll gently, it shares the cores
        }
    }

    private static double Median(List<double> values)
    {
        if (values.Count == 0)
        {
            return double.NaN;
        }

        var sorted = values.Order().ToList();
        return sorted.Count % 2 == 1 ? sorted[sorted.Count / 2] : (sorted[sorted.Count / 2 - 1] + sorted[sorted.Count / 2]) / 2;
    }
}
