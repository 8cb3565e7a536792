using System.CommandLine;
using System.Globalization;
using System.Text.Json.Nodes;
using Outpost.Client;

namespace Outpost.Commands;

/// <summary>`outpost top nodes|apps`: the fleet's resource use and app traffic.</summary>
internal static class MonitorCommands
{
    public static Command Top()
    {
        var window = new Option<string>("--window") { Description = "The span app figures cover (1m to 24h)", DefaultValueFactory = _ => "5m" };
        var output = new Option<string>("--output", "-o") { Description = "table or json", DefaultValueFactory = _ => "table" };
        output.AcceptOnlyFromAmong("table", "json");
        var nodes = new Command("nodes", "Each node's state and resource use: CPU, memory, disk of the data dir, agent memory, gateway connections") { window, output };
        nodes.SetAction((result, ct) => ClientCommands.Run(async () =>
        {
            using var client = CommonOptions.Connect(result);
            var list = await client.GetAsync($"apis/outpost.dev/v1/metrics/nodes?window={Uri.EscapeDataString(result.GetValue(window)!)}", ct);
            if (result.GetValue(output) == "json")
            {
                Console.WriteLine(Output.Json(list));
                return 0;
            }

            var rows = new List<string[]> { (string[])["NODE", "STATE", "CPU", "MEMORY", "DISK", "DATA-DIR", "AGENT-RSS", "CONNECTIONS"] };
            foreach (var item in list["items"]!.AsArray().OfType<JsonObject>())
            {
                var u = item["usage"] as JsonObject;
                rows.Add([
                    (string)item["node"]!, (string?)item["state"] ?? "",
                    u is null ? "-" : Percent((double)u["cpuRatio"]!),
                    u is null ? "-" : $"{Bytes((long)u["memoryUsedBytes"]!)}/{Bytes((long)u["memoryTotalBytes"]!)}",
                    u is null ? "-" : $"{Bytes((long)u["diskUsedBytes"]!)}/{Bytes((long)u["diskTotalBytes"]!)}",
                    u is null ? "-" : Bytes((long)u["dataDirBytes"]!),
                    u is null ? "-" : Bytes((long)u["agentRssBytes"]!),
                    u is null ? "-" : ((long)u["openConnections"]!).ToString(CultureInfo.InvariantCulture),
                ]);
            }

            Console.Write(Output.Columns(rows));
            return 0;
        }));

        var app = new Argument<string?>("app") { Description = "Only this app", Arity = ArgumentArity.ZeroOrOne };
        var apps = new Command("apps", "Each app revision's traffic over the window: requests per second, 5xx ratio, latency p50/p99, timeouts, limit hits, peak instance memory")
        {
            app, window, output,
        };
        apps.SetAction((result, ct) => ClientCommands.Run(async () =>
        {
            using var client = CommonOptions.Connect(result);
            var filter = result.GetValue(app) is { } name ? "&app=" + Uri.EscapeDataString(name) : "";
            var list = await client.GetAsync($"apis/outpost.dev/v1/metrics/apps?window={Uri.EscapeDataString(result.GetValue(window)!)}{filter}", ct);
            if (result.GetValue(output) == "json")
            {
                Console.WriteLine(Output.Json(list));
                return 0;
            }

            var rows = new List<string[]> { (string[])["APP", "REVISION", "NODES", "REQUESTS", "RPS", "5XX", "P50", "P99", "TIMEOUTS", "LIMIT-HITS", "MEMORY"] };
            foreach (var item in list["items"]!.AsArray().OfType<JsonObject>())
            {
                rows.Add([
                    (string)item["app"]!, ((long)item["revision"]!).ToString(CultureInfo.InvariantCulture), ((long)item["nodes"]!).ToString(CultureInfo.InvariantCulture),
                    ((long)item["requests"]!).ToString(CultureInfo.InvariantCulture),
                    ((double)item["requestsPerSecond"]!).ToString("0.##", CultureInfo.InvariantCulture),
                    Percent((double)item["errorRatio"]!),
                    Seconds(item["latencyP50Seconds"]), Seconds(item["latencyP99Seconds"]),
                    ((long)item["timeouts"]!).ToString(CultureInfo.InvariantCulture), ((long)item["limitHits"]!).ToString(CultureInfo.InvariantCulture),
                    Bytes((long)item["memoryPeakBytes"]!),
                ]);
            }

            if (rows.Count == 1)
            {
                Console.Error.WriteLine($"no app served a request in the last {list["window"]}");
                return 0;
            }

            Console.Write(Output.Columns(rows));
            return 0;
        }));
        return new Command("top", "Show resource use of nodes or traffic of apps") { nodes, apps };
    }

    public static Command Logs()
    {
        var target = new Argument<string>("target") { Description = "app/NAME (the app's lines from every node) or node/NAME (everything the node logged: its apps and the agent)" };
        var node = new Option<string?>("--node") { Description = "With app/NAME: only lines from this node" };
        var since = new Option<string?>("--since") { Description = "Only lines newer than this (10m, 1h) or since a time (RFC 3339)" };
        var tail = new Option<int>("--tail") { Description = "How many of the newest lines to show first", DefaultValueFactory = _ => 1000 };
        var follow = new Option<bool>("--follow", "-f") { Description = "Keep printing lines as they arrive" };
        var output = new Option<string>("--output", "-o") { Description = "text or json (one object per line)", DefaultValueFactory = _ => "text" };
        output.AcceptOnlyFromAmong("text", "json");
        var command = new Command("logs", "Print logs the nodes shipped: app output (stderr, the log host function) and the agents' own lines") { target, node, since, tail, follow, output };
        command.SetAction((result, ct) => ClientCommands.Run(async () =>
        {
            var text = result.GetValue(target)!;
            var slash = text.IndexOf('/', StringComparison.Ordinal);
            var (kind, name) = slash > 0 ? (text[..slash], text[(slash + 1)..]) : ("", text);
            string filter;
            if (kind is "app" or "apps" or "application")
            {
                filter = "app=" + Uri.EscapeDataString(name) + (result.GetValue(node) is { } n ? "&node=" + Uri.EscapeDataString(n) : "");
            }
            else if (kind is "node" or "nodes" or "no")
            {
                filter = "node=" + Uri.EscapeDataString(name);
            }
            else
            {
                throw new Core.Manifests.ManifestException($"'{text}' is not app/NAME or node/NAME");
            }

            if (result.GetValue(since) is { } s)
            {
                filter += "&since=" + Uri.EscapeDataString(s);
            }

            using var client = CommonOptions.Connect(result);
            var json = result.GetValue(output) == "json";
            var showApp = kind.StartsWith("node", StringComparison.Ordinal) || kind == "no";
            var page = await client.GetAsync($"apis/outpost.dev/v1/logs?{filter}&limit={Math.Clamp(result.GetValue(tail), 1, 10_000)}", ct);
            while (true)
            {
                foreach (var item in page["items"]!.AsArray().OfType<JsonObject>())
                {
                    Console.WriteLine(json ? item.ToJsonString() : Line(item, showApp));
                }

                if (!result.GetValue(follow))
                {
                    return 0;
                }

                var cursor = (string)page["metadata"]!["continue"]!;
                if (page["items"]!.AsArray().Count == 0)
                {
                    await Task.Delay(TimeSpan.FromMilliseconds(500), ct);
                }

                page = await client.GetAsync($"apis/outpost.dev/v1/logs?{filter}&after={cursor}&limit=1000", ct);
            }
        }));
        return command;
    }

    /// <summary>"TIME NODE LEVEL message", with app@revision for a node's lines (agent for its own).</summary>
    private static string Line(JsonObject item, bool showApp)
    {
        var app = (string)item["app"]! is { Length: > 0 } a ? $"{a}@{(long)item["revision"]!}" : "agent";
        return showApp
            ? $"{item["time"]} {item["node"]} {app} {item["level"]}: {item["message"]}"
            : $"{item["time"]} {item["node"]} {item["level"]}: {item["message"]}";
    }

    internal static string Percent(double ratio) => (100 * ratio).ToString("0.#", CultureInfo.InvariantCulture) + "%";

    private static string Seconds(JsonNode? value) => value is null ? "-"
        : (double)value < 1 ? ((double)value * 1000).ToString("0.##", CultureInfo.InvariantCulture) + "ms"
        : ((double)value).ToString("0.##", CultureInfo.InvariantCulture) + "s";

    internal static string Bytes(long bytes) => bytes switch
    {
        >= 1L << 30 => (bytes / (double)(1L << 30)).ToString("0.#", CultureInfo.InvariantCulture) + "Gi",
        >= 1L << 20 => (bytes / (double)(1L << 20)).ToString("0.#", CultureInfo.InvariantCulture) + "Mi",
        >= 1L << 10 => (bytes / (double)(1L << 10)).ToString("0.#", CultureInfo.InvariantCulture) + "Ki",
        _ => bytes.ToString(CultureInfo.InvariantCulture),
    };
}
