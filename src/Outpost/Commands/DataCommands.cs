using System.CommandLine;
using System.Globalization;
using System.Text.Json.Nodes;

namespace Outpost.Commands;

/// <summary>Reading what the fleet shipped up: `outpost data tail TOPIC`.</summary>
internal static class DataCommands
{
    public static Command Data()
    {
        var topic = new Argument<string>("topic") { Description = "The topic to read" };
        var node = new Option<string?>("--node") { Description = "Only records from this node" };
        var follow = new Option<bool>("--follow", "-f") { Description = "Keep waiting for new records" };
        var output = new Option<string>("--output", "-o") { Description = "text (one line per record) or json (one object per line)", DefaultValueFactory = _ => "text" };
        output.AcceptOnlyFromAmong("text", "json");
        var after = new Option<long>("--after") { Description = "Start after this cursor (0: from the first record)", DefaultValueFactory = _ => 0 };
        var tail = new Command("tail", "Print a topic's ingested records in order (per node, the order they were published)") { topic, node, follow, output, after };
        tail.SetAction((result, ct) => ClientCommands.Run(async () =>
        {
            using var client = CommonOptions.Connect(result);
            var cursor = result.GetValue(after);
            var path = $"apis/outpost.dev/v1/topics/{Uri.EscapeDataString(result.GetValue(topic)!)}/records";
            var nodeFilter = result.GetValue(node) is { } n ? "&node=" + Uri.EscapeDataString(n) : "";
            var json = result.GetValue(output) == "json";
            while (!ct.IsCancellationRequested)
            {
                var page = await client.GetAsync($"{path}?after={cursor}&limit=1000{nodeFilter}", ct);
                var items = page["items"]!.AsArray();
                foreach (var item in items)
                {
                    Console.WriteLine(json ? item!.ToJsonString() : Line(item!.AsObject()));
                }

                cursor = long.Parse((string)page["metadata"]!["continue"]!, CultureInfo.InvariantCulture);
                if (items.Count == 0)
                {
                    if (!result.GetValue(follow))
                    {
                        return 0;
                    }

                    await Task.Delay(TimeSpan.FromMilliseconds(500), ct);
                }
            }

            return 0;
        }));
        return new Command("data", "Read data the edge shipped to the cloud") { tail };
    }

    private static string Line(JsonObject item) =>
        $"{item["ingestedAt"]} {item["node"]}#{item["sequence"]} {item["source"]}: {(item["text"] is JsonNode text ? (string)text! : "base64:" + (string)item["payload"]!)}";
}
