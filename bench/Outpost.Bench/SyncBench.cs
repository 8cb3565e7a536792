using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json.Nodes;
using Outpost.Agent.State;
using Outpost.Core.Store;
using Outpost.IntegrationTests.Faults;
using Outpost.Server.Store;

namespace Outpost.Bench;

/// <summary>
/// Edge-to-cloud sync figures with real processes: shipping throughput for 200-byte records
/// (durable on both sides), delta vs snapshot bytes for a one-field change among 100 apps,
/// and bytes per second on the wire for an idle connected node (counted at a TCP proxy).
/// Baseline in the same run: the server store's ingest alone, in-process.
/// </summary>
internal static class SyncBench
{
    /// <param name="datastore">A PostgreSQL connection string: shipping is measured again with the server on it, beside SQLite.</param>
    public static async Task RunAsync(string outpostDll, string samples, int records, int idleSeconds, string? datastore)
    {
        var work = Directory.CreateTempSubdirectory("outpost-bench-sync-").FullName;
        var processes = new List<Process>();
        try
        {
            var (home, serverUrl, config, token) = await Processes.StartServerAsync(processes, outpostDll, work);
            Console.Error.WriteLine($"[sync] server up at {serverUrl}");

            // A fleet of 100 apps on one module.
            var manifests = Path.Combine(work, "manifests");
            Directory.CreateDirectory(manifests);
            File.Copy(Path.Combine(samples, "apps", "hello", "hello.wasm"), Path.Combine(manifests, "hello.wasm"));
            await File.WriteAllTextAsync(Path.Combine(manifests, "apps.yaml"), Apps(changed: false));
            await Processes.RunAsync(outpostDll, home, "apply", "-f", Path.Combine(manifests, "apps.yaml"), "--config", config);

            Console.Error.WriteLine("[sync] 100 apps applied");
            await using var proxy = new FaultProxy(new Uri(serverUrl).Port);
            var agentDir = Path.Combine(work, "agent");
            var agent = Processes.Start(processes, outpostDll, home, "agent", "--server", proxy.Url, "--token", token, "--name", "edge-1", "--data-dir", agentDir, "--gateway", "127.0.0.1:0");
            var gateway = await Processes.LineAsync(agent, "node edge-1:");
            Console.Error.WriteLine($"[sync] agent up");
            using var http = await Processes.ApiClientAsync(config);
            await Processes.WaitAsync(async () => (await NodeAsync(http, serverUrl))?["status"]?["apps"] is JsonObject { Count: 100 }, "the agent to load 100 apps");
            var snapshotBytes = SentBytes(await NodeAsync(http, serverUrl), "config-snapshot");
            Console.Error.WriteLine($"[sync] snapshot measured: {snapshotBytes} bytes");

            // One field of one app changes.
            await File.WriteAllTextAsync(Path.Combine(manifests, "apps.yaml"), Apps(changed: true));
            await Processes.RunAsync(outpostDll, home, "apply", "-f", Path.Combine(manifests, "apps.yaml"), "--config", config);
            await Processes.WaitAsync(async () => SentBytes(await NodeAsync(http, serverUrl), "config-delta") > 0, "the delta to be sent");
            var deltaBytes = SentBytes(await NodeAsync(http, serverUrl), "config-delta");
            Console.Error.WriteLine($"[sync] delta measured: {deltaBytes} bytes");

            // Idle: nothing to say but heartbeats and keepalives.
            await Task.Delay(TimeSpan.FromSeconds(6));
            var before = Messages(await NodeAsync(http, serverUrl));
            proxy.ResetCounters();
            await Task.Delay(TimeSpan.FromSeconds(idleSeconds));
            var (idleUp, idleDown) = (proxy.UpBytes, proxy.DownBytes);
            var after = Messages(await NodeAsync(http, serverUrl));
            var idleMessages = string.Join(", ", after.Where(a => a.Value.Count > before.GetValueOrDefault(a.Key).Count)
                .Select(a => $"{a.Key} {a.Value.Count - before.GetValueOrDefault(a.Key).Count} ({a.Value.Bytes - before.GetValueOrDefault(a.Key).Bytes} B)"));
            var idleBytesPerSecond = (double)(idleUp + idleDown) / idleSeconds;
            Console.Error.WriteLine($"[sync] idle measured");

            // Throughput: fill the stopped agent's outbox, start it, time the server's ingest.
            Processes.Stop(agent);
            var (count, seconds, recordsPerSecond) = await ShipAsync(processes, outpostDll, home, serverUrl, http, agentDir, "edge-1", records);

            // Baseline: the same records straight into a server store, durable, in-process.
            var baseline = await IngestBaselineAsync(new SqliteControlPlaneStore(Path.Combine(work, "baseline.db")), records);

            // The same on PostgreSQL: a second server on the datastore, a node of its own.
            var postgres = "";
            if (datastore is not null)
            {
                var (_, pgUrl, pgConfig, pgToken) = await Processes.StartServerAsync(processes, outpostDll, work, "server-pg", "--datastore", datastore);
                using var pgHttp = await Processes.ApiClientAsync(pgConfig);
                var pgAgentDir = Path.Combine(work, "agent-pg");
                var joining = Processes.Start(processes, outpostDll, home, "agent", "--server", pgUrl, "--token", pgToken, "--name", "edge-pg", "--data-dir", pgAgentDir, "--gateway", "127.0.0.1:0");
                await Processes.LineAsync(joining, "node edge-pg:");
                // The gateway serves before the join: stop the agent only once the server knows the node.
                // Ready: its sync stream is open, which it opens with the identity it kept.
                await Processes.WaitAsync(async () =>
                {
                    using var response = await pgHttp.GetAsync(pgUrl + "/api/v1/nodes/edge-pg");
                    return response.IsSuccessStatusCode && (string?)JsonNode.Parse(await response.Content.ReadAsStringAsync())?["status"]?["state"] == "Ready";
                }, "edge-pg to join and connect");
                Processes.Stop(joining);
                var (pgCount, pgSeconds, pgRate) = await ShipAsync(processes, outpostDll, home, pgUrl, pgHttp, pgAgentDir, "edge-pg", records);
                var pgBaseline = await IngestBaselineAsync(new PostgresControlPlaneStore(datastore), records);
                Console.WriteLine($"shipping (PostgreSQL): {pgCount} records in {pgSeconds:F2} s after the first batch landed ({pgRate:F0} records/s, SQLite {recordsPerSecond:F0} in this run); store ingest alone: {pgBaseline:F0} records/s (SQLite {baseline:F0})");
                postgres = FormattableString.Invariant($" pg_records_per_s={pgRate:F0} pg_ingest_baseline_records_per_s={pgBaseline:F0}");
            }

            Console.WriteLine($"shipping: {count} records in {seconds:F2} s after the first batch landed; store ingest alone: {baseline:F0} records/s");
            Console.WriteLine($"config: snapshot of 100 apps {snapshotBytes} bytes, one-field delta {deltaBytes} bytes");
            Console.WriteLine($"idle: {idleUp + idleDown} bytes on the wire in {idleSeconds} s ({idleUp} up, {idleDown} down) (TLS; heartbeat 10 s, usage once a minute when steady, keepalive 60 s); sync messages meanwhile (protobuf bytes): {(idleMessages.Length == 0 ? "none" : idleMessages)}");
            Console.WriteLine(FormattableString.Invariant(
                $"sync records_per_s={recordsPerSecond:F0} delta_bytes={deltaBytes} snapshot_bytes={snapshotBytes} delta_ratio={(double)deltaBytes / snapshotBytes:F4} idle_bytes_per_node_s={idleBytesPerSecond:F2} ingest_baseline_records_per_s={baseline:F0}{postgres}"));
        }
        finally
        {
            Processes.StopAll(processes, work);
        }
    }

    private static byte[] Payload(Random random, int i)
    {
        // 200 bytes: a JSON-ish reading with random digits, as sensors send.
        var text = $"{{\"seq\":{i},\"v\":[{string.Join(',', Enumerable.Range(0, 20).Select(_ => random.Next(1000, 9999)))}]}}";
        return Encoding.UTF8.GetBytes(text.PadRight(200)[..200]);
    }

    private static string Apps(bool changed)
    {
        var yaml = new StringBuilder();
        for (var i = 0; i < 100; i++)
        {
            var greeting = changed && i == 42 ? "changed" : $"hello from app {i}";
            yaml.Append(CultureInfo.InvariantCulture, $"apiVersion: outpost.dev/v1\nkind: Application\nmetadata:\n  name: app-{i:D3}\n  labels:\n    tier: edge\nspec:\n  module:\n    path: hello.wasm\n  triggers:\n    http:\n      route: /app-{i:D3}\n  env:\n    GREETING: \"{greeting}\"\n  limits:\n    memoryMiB: 16\n---\n");
        }

        return yaml.ToString();
    }

    /// <summary>
    /// Fills a stopped (joined) agent's outbox with RECORDS, starts it against the server, and
    /// times the server's ingest from the first batch landing to the last.
    /// </summary>
    private static async Task<(long Count, double Seconds, double RecordsPerSecond)> ShipAsync(List<Process> processes, string outpostDll, string home, string serverUrl,
        HttpClient http, string agentDir, string node, int records)
    {
        using (var data = new LocalDataStore(Path.Combine(agentDir, "data.db"), quotaBytes: 4L << 30))
        {
            var random = new Random(42);
            foreach (var chunk in Enumerable.Range(0, records).Chunk(10_000))
            {
                data.AppendMany(chunk.Select(i => ("bench", "bench", Payload(random, i))));
            }
        }

        var restarted = Processes.Start(processes, outpostDll, home, "agent", "--server", serverUrl, "--name", node, "--data-dir", agentDir, "--gateway", "127.0.0.1:0");
        await Processes.LineAsync(restarted, $"node {node}:");
        Console.Error.WriteLine($"[sync] outbox of {node} filled, agent restarted");
        long first = 0, firstCount = 0, count = 0;
        var watch = Stopwatch.StartNew();
        while (count < records && watch.Elapsed < TimeSpan.FromMinutes(10))
        {
            count = await IngestedAsync(http, serverUrl);
            if (count > 0 && first == 0)
            {
                first = watch.ElapsedTicks;
                firstCount = count;
            }

            await Task.Delay(100); // the count is a scan: poll gently, it shares the cores
        }

        Processes.Stop(restarted);
        var seconds = (watch.ElapsedTicks - first) / (double)Stopwatch.Frequency;
        return (count, seconds, (count - firstCount) / seconds);
    }

    /// <summary>The same records straight into a store (durable), in batches as the server takes them; records per second.</summary>
    private static async Task<double> IngestBaselineAsync(IControlPlaneStore store, int records)
    {
        await using (store)
        {
            await store.InitializeAsync(CancellationToken.None);
            var random = new Random(7);
            var all = Enumerable.Range(1, records).Select(i => new IngestRecord(i, "baseline", "bench", Payload(random, i), DateTimeOffset.UtcNow)).ToList();
            var watch = Stopwatch.StartNew();
            foreach (var batch in all.Chunk(4096))
            {
                await store.IngestAsync("edge-baseline", batch, CancellationToken.None);
            }

            return records / watch.Elapsed.TotalSeconds;
        }
    }

    /// <summary>The node's sync messages so far, by direction and kind ("received:heartbeat"): count and bytes.</summary>
    private static Dictionary<string, (long Count, long Bytes)> Messages(JsonObject? node)
    {
        var messages = new Dictionary<string, (long Count, long Bytes)>(StringComparer.Ordinal);
        foreach (var direction in (string[])["sent", "received"])
        {
            if (node?["status"]?["sync"]?[direction] is JsonObject kinds)
            {
                foreach (var (kind, value) in kinds)
                {
                    messages[$"{direction}:{kind}"] = ((long?)value?["messages"] ?? 0, (long?)value?["bytes"] ?? 0);
                }
            }
        }

        return messages;
    }

    private static long SentBytes(JsonObject? node, string kind) => (long?)node?["status"]?["sync"]?["sent"]?[kind]?["bytes"] ?? 0;

    private static async Task<JsonObject?> NodeAsync(HttpClient http, string server)
    {
        using var response = await http.GetAsync(server + "/api/v1/nodes/edge-1");
        return response.IsSuccessStatusCode ? JsonNode.Parse(await response.Content.ReadAsStringAsync())!.AsObject() : null;
    }

    private static async Task<long> IngestedAsync(HttpClient http, string server)
    {
        using var response = await http.GetAsync(server + "/apis/outpost.dev/v1/topics/bench");
        return response.IsSuccessStatusCode ? (long)JsonNode.Parse(await response.Content.ReadAsStringAsync())!["status"]!["records"]! : 0;
    }
}
