using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;

namespace Outpost.Bench;

/// <summary>
/// The control plane at fleet scale, against a real `outpost server` process: N simulated nodes
/// (<see cref="FleetNode"/>) in this process, each with its own TLS connection and certificate.
/// Figures: the server's RSS per connected node and its CPU while they idle; how fast one change
/// for every node reaches them all; how long a fleet that lost its connections all at once takes to
/// be back (the agents' own backoff) and how many of those attempts fail; `rollout undo` on 1,000 nodes.
/// </summary>
internal static class FleetBench
{
    private const string UndoApp = "undo";
    private const string FanoutConfig = "fleet-fanout";

    /// <summary>
    /// Runs the scenario; the server was started by bench/run.sh. With replicas, <paramref name="serverUrls"/>
    /// and <paramref name="serverPids"/> name each (comma-separated): the nodes are spread over them,
    /// the figures are the first one's, and at the end the first one is killed (SIGKILL).
    /// </summary>
    public static async Task<int> RunAsync(string serverUrls, string config, string joinToken, string serverPids, string outpost, string samples, int nodes, int runs, int idleSeconds, double recordSeconds, double stormSeconds)
    {
        var urls = serverUrls.Split(',');
        var pids = serverPids.Split(',').Select(p => int.Parse(p, CultureInfo.InvariantCulture)).ToArray();
        var serverUrl = urls[0];
        var serverPid = pids[0];
        var work = Directory.CreateTempSubdirectory("outpost-bench-fleet-").FullName;
        using var stop = new CancellationTokenSource();
        var running = new List<Task>();
        try
        {
            using var http = await Processes.ApiClientAsync(config);
            var undoNodes = Math.Min(1000, nodes);
            File.Copy(Path.Combine(samples, "apps", "hello", "hello.wasm"), Path.Combine(work, "hello.wasm"));
            await ApplyAppAsync(outpost, config, work, "one");
            await ApplyConfigAsync(http, serverUrl, "fanout-0");
            await Task.Delay(TimeSpan.FromSeconds(3));
            var rssBefore = RssKb(serverPid);
            Log($"server RSS before any node: {rssBefore / 1024.0:F1} MB");

            var fleet = await FleetContext.CreateAsync(urls, joinToken, work, TimeSpan.FromSeconds(recordSeconds), stop.Token);
            var sims = Enumerable.Range(0, nodes)
                .Select(i => new FleetNode(fleet, i, FormattableString.Invariant($"sim-{i + 1:D5}"),
                    new Dictionary<string, string>(StringComparer.Ordinal) { ["fleet"] = i < undoNodes ? UndoApp : "rest" }))
                .ToArray();

            // Joins and first sessions, 64 at a time: the handshakes share two cores with the server.
            var connect = Stopwatch.StartNew();
            using (var gate = new SemaphoreSlim(64))
            {
                foreach (var node in sims)
                {
                    await gate.WaitAsync();
                    running.Add(node.RunAsync(stop.Token));
                    _ = node.FirstSync.ContinueWith(_ => gate.Release(), TaskScheduler.Default);
                    if ((node.Index + 1) % 1000 == 0)
                    {
                        Log($"{node.Index + 1} nodes started, {fleet.InSync} in sync, {connect.Elapsed.TotalSeconds:F0} s");
                    }
                }

                await Task.WhenAll(sims.Select(s => s.FirstSync)).WaitAsync(TimeSpan.FromMinutes(30));
            }

            var connectS = connect.Elapsed.TotalSeconds;
            var joinFailures = fleet.FailedAttempts;
            var joinBreakdown = Breakdown(fleet);
            await WaitAsync(async () => await ReadyAsync(http, serverUrl) >= nodes, $"the server to count {nodes} nodes Ready", TimeSpan.FromMinutes(5), TimeSpan.FromSeconds(1));
            var readySeen = await ReadyAsync(http, serverUrl);
            Log($"{nodes} nodes joined and in sync in {connectS:F1} s ({joinFailures} failed attempts{joinBreakdown}); the server counts {readySeen} Ready");

            // Idle: heartbeats, usage once a minute, a record per node per interval; nothing else.
            await Task.Delay(TimeSpan.FromSeconds(15));
            var server = Process.GetProcessById(serverPid);
            var me = Process.GetCurrentProcess();
            var gc0 = await GcAsync(http, serverUrl);
            var simGc0 = SimGc.Now();
            var cpu0 = server.TotalProcessorTime;
            var myCpu0 = me.TotalProcessorTime;
            var idle = Stopwatch.StartNew();
            var rssSamples = new List<double>();
            while (idle.Elapsed < TimeSpan.FromSeconds(idleSeconds))
            {
                await Task.Delay(TimeSpan.FromSeconds(5));
                rssSamples.Add(RssKb(serverPid));
            }

            server.Refresh();
            me.Refresh();
            var idleS = idle.Elapsed.TotalSeconds;
            var idleCpuPct = (server.TotalProcessorTime - cpu0).TotalMilliseconds / (idleS * 1000) * 100;
            var simCpuPct = (me.TotalProcessorTime - myCpu0).TotalMilliseconds / (idleS * 1000) * 100;
            var rssIdle = Median(rssSamples);
            var gc1 = await GcAsync(http, serverUrl);
            // With replicas, the first one's RSS is for the nodes whose stream it holds.
            var served = urls.Length > 1 ? sims.Count(s => s.Server == 0) : nodes;
            var kbPerNode = (rssIdle - rssBefore) / served;
            var inSyncAfterIdle = fleet.InSync;
            var readyAfterIdle = await ReadyAsync(http, serverUrl);
            Log(FormattableString.Invariant($"idle {idleS:F0} s: server CPU {idleCpuPct:F1} % of a core, RSS {rssIdle / 1024:F0} MB; simulator CPU {simCpuPct:F1} %, RSS {RssKb(Environment.ProcessId) / 1024:F0} MB; {fleet.RecordsAcked} records acked so far; Ready after: {readyAfterIdle}"));
            Log(FormattableString.Invariant($"idle {idleS:F0} s, the server's collector: {GcLine(gc0, gc1, idleS)}; the simulator's: {SimGc.Now().Since(simGc0, idleS)}"));

            // Fan-out: one ConfigSet change that targets every node (no selector), RUNS times.
            var fanout = new List<(double P50, double P99, double Max, double Within)>();
            for (var run = 1; run <= runs; run++)
            {
                var marker = FormattableString.Invariant($"\"fanout-{run}\"");
                var at = new long[nodes];
                fleet.Applied = (node, update, ticks) =>
                {
                    if (Volatile.Read(ref at[node.Index]) == 0 && update.Upserts.Any(r => r.Name == FanoutConfig && r.Json.Contains(marker, StringComparison.Ordinal)))
                    {
                        Interlocked.CompareExchange(ref at[node.Index], ticks, 0);
                    }
                };
                var fanGc0 = await GcAsync(http, serverUrl);
                var fanSimGc0 = SimGc.Now();
                server.Refresh();
                me.Refresh();
                var (fanServerCpu0, fanSimCpu0) = (server.TotalProcessorTime, me.TotalProcessorTime);
                var called = Stopwatch.GetTimestamp();
                await ApplyConfigAsync(http, serverUrl, FormattableString.Invariant($"fanout-{run}"));
                var returned = Stopwatch.GetTimestamp();
                await WaitAsync(() => Task.FromResult(AllSet(at)), $"all {nodes} nodes to ack fan-out {run}", TimeSpan.FromMinutes(5), TimeSpan.FromMilliseconds(20));
                fleet.Applied = null;
                server.Refresh();
                me.Refresh();
                var (fanServerCpu, fanSimCpu) = ((server.TotalProcessorTime - fanServerCpu0).TotalSeconds, (me.TotalProcessorTime - fanSimCpu0).TotalSeconds);
                var fanSimGc = SimGc.Now().Since(fanSimGc0, Stopwatch.GetElapsedTime(called).TotalSeconds);
                var fanGc = GcLine(fanGc0, await GcAsync(http, serverUrl), Stopwatch.GetElapsedTime(called).TotalSeconds);
                var ms = at.Select(t => Math.Max(0, t - returned) * 1000.0 / Stopwatch.Frequency).Order().ToArray();
                var figures = (P50: Percentile(ms, 0.50), P99: Percentile(ms, 0.99), Max: ms[^1], Within: ms.Count(m => m <= 1500) * 100.0 / ms.Length);
                fanout.Add(figures);
                // Counted from the API's answer (a node that had it sooner counts 0): the apply call itself is its own figure.
                var applyMs = Stopwatch.GetElapsedTime(called, returned).TotalMilliseconds;
                Log(FormattableString.Invariant($"fan-out {run}: p50 {figures.P50:F0} ms, p99 {figures.P99:F0} ms (99 % of the nodes had it by then), all {figures.Max:F0} ms; {figures.Within:F1} % within 1.5 s; the apply call took {applyMs:F0} ms; CPU until all had it: server {fanServerCpu:F2} s, simulator {fanSimCpu:F2} s"));
                Log($"fan-out {run}, the server's collector until all had it: {fanGc}; the simulator's: {fanSimGc}");
                await Task.Delay(TimeSpan.FromSeconds(3));
            }

            // Undo: the app on the fleet=undo nodes moves to a new revision (all at once), then `rollout undo`, RUNS times.
            var undoMs = new List<double>();
            var generation = await GenerationAsync(http, serverUrl);
            await WaitUndoFleetAsync(http, serverUrl, undoNodes, generation);
            for (var run = 1; run <= runs; run++)
            {
                await ApplyAppAsync(outpost, config, work, FormattableString.Invariant($"two-{run}"));
                generation = await GenerationAsync(http, serverUrl);
                var apply = Stopwatch.StartNew();
                await WaitUndoFleetAsync(http, serverUrl, undoNodes, generation);
                var applyMs = apply.Elapsed.TotalMilliseconds;
                using (var response = await http.PostAsync(serverUrl + $"/apis/outpost.dev/v1/applications/{UndoApp}/rollback", new StringContent("{}", Encoding.UTF8, "application/json")))
                {
                    response.EnsureSuccessStatusCode();
                }

                var undo = Stopwatch.StartNew();
                generation++;
                await WaitUndoFleetAsync(http, serverUrl, undoNodes, generation);
                undoMs.Add(undo.Elapsed.TotalMilliseconds);
                Log(FormattableString.Invariant($"undo {run}: {undoMs[^1]:F0} ms until all {undoNodes} nodes report revision {generation} (the new revision before it: {applyMs:F0} ms from the CLI returning)"));
            }

            // Storm: every connection cut at once; each node reconnects with the agent's backoff.
            fleet.ResetFailures();
            var before = sims.Select(s => s.Sessions).ToArray();
            // Whose cores the storm takes: the server's and the simulator's CPU from the cut until every node is back.
            server.Refresh();
            me.Refresh();
            var (stormServerCpu0, stormSimCpu0) = (server.TotalProcessorTime, me.TotalProcessorTime);
            var stormSimGc0 = SimGc.Now();
            var stormCpu = "";
            var storm = Stopwatch.StartNew();
            foreach (var node in sims)
            {
                node.Drop();
            }

            var timeline = new List<string>();
            var simAllBack = double.NaN;
            var pollTimeline = Task.Run(async () =>
            {
                while (double.IsNaN(Volatile.Read(ref simAllBack)))
                {
                    var asked = storm.Elapsed.TotalSeconds;
                    var ready = await ReadyAsync(http, serverUrl);
                    lock (timeline)
                    {
                        timeline.Add(FormattableString.Invariant($"{asked:F1}s:{ready}"));
                    }

                    await Task.Delay(TimeSpan.FromSeconds(1));
                }
            });
            // Bounded: a server that cannot take the fleet back is a figure too (how many came back, and what failed).
            var stormLimit = TimeSpan.FromSeconds(stormSeconds);
            string stormS;
            try
            {
                await WaitAsync(() => Task.FromResult(sims.All(s => s.Sessions > before[s.Index])), $"all {nodes} nodes to reconnect", stormLimit, TimeSpan.FromMilliseconds(20));
                Volatile.Write(ref simAllBack, storm.Elapsed.TotalSeconds);
                server.Refresh();
                me.Refresh();
                var (serverCpu, simCpu) = ((server.TotalProcessorTime - stormServerCpu0).TotalSeconds, (me.TotalProcessorTime - stormSimCpu0).TotalSeconds);
                stormCpu = FormattableString.Invariant($"; until then the server used {serverCpu:F1} s of CPU ({serverCpu * 1000 / nodes:F2} ms per node), the simulator {simCpu:F1} s ({simCpu * 1000 / nodes:F2} ms per node; its collector: {SimGc.Now().Since(stormSimGc0, storm.Elapsed.TotalSeconds)})");
                await WaitAsync(async () => await ReadyAsync(http, serverUrl) >= nodes, $"the server to count {nodes} Ready after the storm", TimeSpan.FromMinutes(5), TimeSpan.FromMilliseconds(100));
                stormS = storm.Elapsed.TotalSeconds.ToString("F1", CultureInfo.InvariantCulture);
            }
            catch (TimeoutException)
            {
                Volatile.Write(ref simAllBack, storm.Elapsed.TotalSeconds);
                stormS = FormattableString.Invariant($">{stormLimit.TotalSeconds:F0}");
            }

            await pollTimeline;
            var back = sims.Count(s => s.Sessions > before[s.Index]);
            var stormFailures = fleet.FailedAttempts;
            Log(FormattableString.Invariant($"storm: {back} of {nodes} nodes back in sync {simAllBack:F1} s after the cut (server counts all Ready at: {stormS} s); {stormFailures} attempts failed{Breakdown(fleet)}{stormCpu}"));
            Log($"storm: server Ready count over time: {string.Join(' ', timeline)}");

            // Failover: the first replica killed without a word; its nodes move to the others.
            var failoverS = "na";
            var failover = "failover: na (one server; REPLICAS=2 runs two on PostgreSQL)";
            if (urls.Length > 1)
            {
                fleet.ResetFailures();
                var moving = sims.Where(s => s.Server == 0).ToArray();
                var sessions = sims.Select(s => s.Sessions).ToArray();
                var survivor = urls[1];
                Process.GetProcessById(serverPid).Kill();
                var kill = Stopwatch.StartNew();
                try
                {
                    await WaitAsync(() => Task.FromResult(moving.All(s => s.Sessions > sessions[s.Index])), $"the {moving.Length} nodes of the killed replica to reconnect", stormLimit, TimeSpan.FromMilliseconds(20));
                    var moved = kill.Elapsed.TotalSeconds;
                    await WaitAsync(async () => await ReadyAsync(http, survivor) >= nodes, $"{survivor} to count {nodes} Ready", stormLimit, TimeSpan.FromMilliseconds(100));
                    failoverS = kill.Elapsed.TotalSeconds.ToString("F1", CultureInfo.InvariantCulture);
                    Log(FormattableString.Invariant($"failover: the {moving.Length} nodes of the killed replica back in sync on the other {moved:F1} s after the kill; it counts all {nodes} Ready at {failoverS} s; {fleet.FailedAttempts} attempts failed{Breakdown(fleet)}"));
                }
                catch (TimeoutException)
                {
                    failoverS = FormattableString.Invariant($">{stormLimit.TotalSeconds:F0}");
                }

                // Nothing lost: every record a node saw acked (stored durably before the ack) is in the store.
                var acked = fleet.RecordsAcked;
                var stored = await StoredRecordsAsync(http, survivor);
                failover = FormattableString.Invariant($"failover: {failoverS} s from SIGKILL of the replica holding {moving.Length} of {nodes} nodes until the other counts all Ready; {acked} records acked to the nodes, {stored} stored ({Math.Max(0, acked - stored)} lost); target: within 30 s, nothing lost");
            }

            var fanoutP99 = Median([.. fanout.Select(f => f.P99)]);
            Console.WriteLine(FormattableString.Invariant($"nodes: {readySeen} of {nodes} simulated nodes connected and Ready at once (joined in {connectS:F0} s, {joinFailures} failed attempts); target: all"));
            Console.WriteLine(FormattableString.Invariant($"memory: server RSS {rssBefore / 1024:F0} MB before any node, {rssIdle / 1024:F0} MB with {nodes} idle{(served == nodes ? "" : $" ({served} of them on it)")}: {kbPerNode:F1} KB per node; target <= 80 KB/node"));
            Console.WriteLine(FormattableString.Invariant($"idle: server CPU {idleCpuPct:F1} % of one core over {idleS:F0} s with {nodes} nodes idle (simulator {simCpuPct:F1} %); target <= 20 %"));
            Console.WriteLine(FormattableString.Invariant($"fan-out: p50 {Median([.. fanout.Select(f => f.P50)]):F0} ms, p99 {fanoutP99:F0} ms, all {Median([.. fanout.Select(f => f.Max)]):F0} ms, {Median([.. fanout.Select(f => f.Within)]):F1} % within 1.5 s (medians of {runs}); target: 99 % within 1.5 s"));
            Console.WriteLine(FormattableString.Invariant($"storm: {stormS} s until the server counts all {nodes} Ready again after every connection was cut ({back} back in sync by the end); {stormFailures} attempts failed{Breakdown(fleet)}; target: all within 30 s, none failed"));
            Console.WriteLine(FormattableString.Invariant($"undo: {Median(undoMs):F0} ms from `rollout undo` until all {undoNodes} nodes report the old revision (median of {runs}); target <= 3000 ms"));
            Console.WriteLine(failover);
            Console.WriteLine(FormattableString.Invariant(
                $"fleet nodes={readySeen} server_rss_mb={rssIdle / 1024:F0} kb_per_node={kbPerNode:F1} idle_cpu_pct={idleCpuPct:F1} fanout_p99_ms={fanoutP99:F0} storm_s={stormS} failed_joins={stormFailures} failover_s={failoverS} undo_{undoNodes}_ms={Median(undoMs):F0}"));
            return 0;
        }
        finally
        {
            await stop.CancelAsync();
            await Task.WhenAll(running).WaitAsync(TimeSpan.FromSeconds(30)).ContinueWith(_ => { }, TaskScheduler.Default);
            Directory.Delete(work, recursive: true);
        }
    }

    private static void Log(string line) => Console.Error.WriteLine("[fleet] " + line);

    private static string Breakdown(FleetContext fleet) => fleet.Failures.IsEmpty
        ? ""
        : ": " + string.Join("; ", fleet.Failures.OrderByDescending(f => f.Value).Select(f => FormattableString.Invariant($"{f.Value} x {f.Key}")));

    /// <summary>The app on every fleet=undo node, at a greeting of its own: one CLI apply (it uploads the module).</summary>
    private static async Task ApplyAppAsync(string outpost, string config, string work, string greeting)
    {
        var manifest = Path.Combine(work, "undo.yaml");
        await File.WriteAllTextAsync(manifest, $"""
            apiVersion: outpost.dev/v1
            kind: Application
            metadata:
              name: {UndoApp}
            spec:
              module:
                path: hello.wasm
              triggers:
                http:
                  route: /undo
              env:
                GREETING: {greeting}
              placement:
                nodeSelector:
                  fleet: {UndoApp}
              rollout:
                strategy: allAtOnce
            """);
        var info = new ProcessStartInfo(outpost.EndsWith(".dll", StringComparison.Ordinal) ? "dotnet" : outpost) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        if (outpost.EndsWith(".dll", StringComparison.Ordinal))
        {
            info.ArgumentList.Add(outpost);
        }

        foreach (var arg in new[] { "apply", "-f", manifest, "--config", config })
        {
            info.ArgumentList.Add(arg);
        }

        using var process = Process.Start(info)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = await process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"outpost apply failed: {error}{await output}");
        }
    }

    /// <summary>A ConfigSet with no placement (every node), through the API's apply.</summary>
    private static async Task ApplyConfigAsync(HttpClient http, string server, string value)
    {
        var body = new JsonObject
        {
            ["kind"] = "List",
            ["apiVersion"] = "v1",
            ["items"] = new JsonArray(new JsonObject
            {
                ["apiVersion"] = "outpost.dev/v1",
                ["kind"] = "ConfigSet",
                ["metadata"] = new JsonObject { ["name"] = FanoutConfig },
                ["spec"] = new JsonObject { ["data"] = new JsonObject { ["run"] = value } },
            }),
        };
        using var response = await http.PostAsync(server + "/apis/outpost.dev/v1/apply", new StringContent(body.ToJsonString(), Encoding.UTF8, "application/json"));
        if (!response.IsSuccessStatusCode)
        {
            throw new InvalidOperationException($"apply of {FanoutConfig} failed: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}");
        }
    }

    private static async Task<long> GenerationAsync(HttpClient http, string server)
    {
        using var response = await http.GetAsync($"{server}/apis/outpost.dev/v1/applications/{UndoApp}");
        response.EnsureSuccessStatusCode();
        return (long)JsonNode.Parse(await response.Content.ReadAsStringAsync())!["metadata"]!["generation"]!;
    }

    /// <summary>Until every node of the app reports it Ready at <paramref name="generation"/>, as the server's rollout status shows it.</summary>
    private static Task WaitUndoFleetAsync(HttpClient http, string server, int nodes, long generation) => WaitAsync(async () =>
    {
        using var response = await http.GetAsync($"{server}/apis/outpost.dev/v1/applications/{UndoApp}/rollout");
        var items = JsonNode.Parse(await response.Content.ReadAsStringAsync())?["nodes"]?.AsArray() ?? [];
        return items.Count == nodes && items.All(n => (long?)n?["revision"] == generation && (string?)n?["appState"] == "Ready");
    }, $"all {nodes} nodes to report revision {generation}", TimeSpan.FromMinutes(5), TimeSpan.FromMilliseconds(100));

    /// <summary>Nodes the server counts Ready (its /metrics); -1 when it does not answer within 10 s (a swamped server is a figure too).</summary>
    private static async Task<int> ReadyAsync(HttpClient http, string server)
    {
        string text;
        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            // One family: the whole exposition is ~27 series per node (5.5 MB at 3,000 nodes), and
            // reading it every second through a storm loads the server being measured.
            text = await http.GetStringAsync(server + "/metrics?name[]=outpost_nodes", timeout.Token);
        }
        catch (Exception ex) when (ex is OperationCanceledException or HttpRequestException)
        {
            return -1;
        }

        foreach (var line in text.Split('\n'))
        {
            if (line.StartsWith("outpost_nodes{state=\"Ready\"}", StringComparison.Ordinal))
            {
                return (int)double.Parse(line[(line.LastIndexOf(' ') + 1)..], CultureInfo.InvariantCulture);
            }
        }

        return 0;
    }

    /// <summary>The server's collector counters from its /metrics (<c>outpost_server_gc_*</c>, allocated bytes); empty when it does not answer.</summary>
    private static async Task<Dictionary<string, double>> GcAsync(HttpClient http, string server)
    {
        var values = new Dictionary<string, double>(StringComparer.Ordinal);
        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            var text = await http.GetStringAsync(server + "/metrics?name[]=outpost_server_gc_total&name[]=outpost_server_gc_pause_seconds_total&name[]=outpost_server_allocated_bytes_total"
                + "&name[]=outpost_server_managed_heap_bytes&name[]=outpost_server_managed_committed_bytes", timeout.Token);
            foreach (var line in text.Split('\n'))
            {
                if (line.Length > 0 && line[0] != '#' && line.LastIndexOf(' ') is var space and > 0)
                {
                    values[line[..space]] = double.Parse(line[(space + 1)..], CultureInfo.InvariantCulture);
                }
            }
        }
        catch (Exception ex) when (ex is OperationCanceledException or HttpRequestException)
        {
        }

        return values;
    }

    /// <summary>The simulator's own collector (it runs in this process), to read beside the server's.</summary>
    private readonly record struct SimGc(int Gen0, int Gen1, int Gen2, TimeSpan Paused, long Allocated)
    {
        public static SimGc Now() => new(GC.CollectionCount(0), GC.CollectionCount(1), GC.CollectionCount(2), GC.GetTotalPauseDuration(), GC.GetTotalAllocatedBytes());

        public string Since(SimGc before, double seconds)
        {
            var (gen2, gen1) = (Gen2 - before.Gen2, Gen1 - before.Gen1 - (Gen2 - before.Gen2));
            var gen0 = Gen0 - before.Gen0 - (Gen1 - before.Gen1);
            var allocatedMb = (Allocated - before.Allocated) / 1048576.0;
            return FormattableString.Invariant(
                $"{gen0} gen0, {gen1} gen1, {gen2} gen2 collections; {allocatedMb:F0} MB allocated; paused {(Paused - before.Paused).TotalMilliseconds / seconds:F1} ms per s; heap {GC.GetGCMemoryInfo().HeapSizeBytes / 1048576} MB");
        }
    }

    /// <summary>What the collector did between two readings of <see cref="GcAsync"/>.</summary>
    private static string GcLine(Dictionary<string, double> before, Dictionary<string, double> after, double seconds)
    {
        double Delta(string key) => after.GetValueOrDefault(key) - before.GetValueOrDefault(key);
        if (before.Count == 0 || after.Count == 0)
        {
            return "not read (no answer)";
        }

        var gen2 = Delta("outpost_server_gc_total{generation=\"2\"}");
        var gen1 = Delta("outpost_server_gc_total{generation=\"1\"}") - gen2;
        var gen0 = Delta("outpost_server_gc_total{generation=\"0\"}") - gen1 - gen2;
        var allocatedMb = Delta("outpost_server_allocated_bytes_total") / 1048576;
        var pause = Delta("outpost_server_gc_pause_seconds_total");
        return FormattableString.Invariant(
            $"{gen0:F0} gen0, {gen1:F0} gen1, {gen2:F0} gen2 collections; {allocatedMb:F0} MB allocated ({allocatedMb / seconds:F1} MB/s, {(gen0 + gen1 + gen2 > 0 ? allocatedMb / (gen0 + gen1 + gen2) : 0):F1} MB per collection); paused {pause * 1000 / seconds:F1} ms per s; managed heap {after.GetValueOrDefault("outpost_server_managed_heap_bytes") / 1048576:F0} MB after the last, {after.GetValueOrDefault("outpost_server_managed_committed_bytes") / 1048576:F0} MB committed");
    }

    /// <summary>Records the server holds in the topic the simulated nodes write.</summary>
    private static async Task<long> StoredRecordsAsync(HttpClient http, string server)
    {
        using var response = await http.GetAsync(server + "/apis/outpost.dev/v1/topics/readings");
        response.EnsureSuccessStatusCode();
        return (long)JsonNode.Parse(await response.Content.ReadAsStringAsync())!["status"]!["records"]!;
    }

    /// <summary>VmRSS of a process, in KB.</summary>
    private static double RssKb(int pid)
    {
        foreach (var line in File.ReadLines($"/proc/{pid}/status"))
        {
            if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
            {
                return double.Parse(line["VmRSS:".Length..].Trim().Split(' ')[0], CultureInfo.InvariantCulture);
            }
        }

        throw new InvalidOperationException($"no VmRSS for process {pid}");
    }

    private static async Task WaitAsync(Func<Task<bool>> condition, string what, TimeSpan timeout, TimeSpan poll)
    {
        var deadline = Stopwatch.StartNew();
        while (!await condition())
        {
            if (deadline.Elapsed > timeout)
            {
                throw new TimeoutException($"timed out after {timeout.TotalSeconds:F0} s waiting for {what}");
            }

            await Task.Delay(poll);
        }
    }

    private static bool AllSet(long[] at)
    {
        for (var i = 0; i < at.Length; i++)
        {
            if (Volatile.Read(ref at[i]) == 0)
            {
                return false;
            }
        }

        return true;
    }

    private static double Percentile(double[] sorted, double p) => sorted[Math.Clamp((int)Math.Ceiling(p * sorted.Length) - 1, 0, sorted.Length - 1)];

    private static double Median(List<double> values)
    {
        if (values.Count == 0)
        {
            return double.NaN;
        }

        var sorted = values.Order().ToList();
        return sorted.Count % 2 == 1 ? sorted[sorted.Count / 2] : (sorted[(sorted.Count / 2) - 1] + sorted[sorted.Count / 2]) / 2;
    }
}
