using System.CommandLine;
using System.Text;
using System.Text.Json.Nodes;
using Outpost.Client;

namespace Outpost.Commands;

/// <summary>Bucket data as the cloud holds it: `outpost kv get|put|delete|list|conflicts`.</summary>
internal static class KvCommands
{
    private static readonly string[] ConflictHeader = ["TIME", "KEY", "WINNER", "BY", "LOSER", "BY"];

    public static Command Kv()
    {
        var bucket = new Argument<string>("bucket") { Description = "The Bucket's name" };
        var key = new Argument<string>("key") { Description = "The key" };
        var node = new Option<string?>("--node") { Description = "The node whose keys to read (edge-to-cloud buckets keep one keyspace per node)" };
        var output = new Option<string>("--output", "-o") { Description = "text or json", DefaultValueFactory = _ => "text" };
        output.AcceptOnlyFromAmong("text", "json");

        var get = new Command("get", "Print a key's value (as the cloud holds it)") { bucket, key, node, output };
        get.SetAction((result, ct) => ClientCommands.Run(async () =>
        {
            using var client = CommonOptions.Connect(result);
            var entry = await client.GetAsync(EntryPath(result.GetValue(bucket)!, result.GetValue(key)!) + NodeQuery(result.GetValue(node), "?"), ct);
            Console.WriteLine(result.GetValue(output) == "json" ? Output.Json(entry) : Value(entry));
            return 0;
        }));

        var value = new Argument<string?>("value") { Description = "The value (UTF-8 text); omit it with --from-file", Arity = ArgumentArity.ZeroOrOne };
        var fromFile = new Option<FileInfo?>("--from-file") { Description = "Read the value's bytes from a file ('-' is stdin)" };
        var put = new Command("put", "Write a key from the cloud (two-way and cloud-to-edge buckets); it reaches the bucket's nodes") { bucket, key, value, fromFile };
        put.SetAction((result, ct) => ClientCommands.Run(async () =>
        {
            var file = result.GetValue(fromFile);
            var text = result.GetValue(value);
            if ((file is null) == (text is null))
            {
                await Console.Error.WriteLineAsync("error: give the value either as an argument or with --from-file (not both)");
                return 2;
            }

            var bytes = file is null ? Encoding.UTF8.GetBytes(text!)
                : file.Name == "-" ? await ReadStdinAsync(ct) : await File.ReadAllBytesAsync(file.FullName, ct);
            using var client = CommonOptions.Connect(result);
            var entry = await client.SendBytesAsync(HttpMethod.Put, EntryPath(result.GetValue(bucket)!, result.GetValue(key)!), bytes, "application/octet-stream", ct);
            Console.WriteLine($"{result.GetValue(bucket)}/{result.GetValue(key)} written (stamp {entry["stamp"]})");
            return 0;
        }));

        var delete = new Command("delete", "Delete a key from the cloud (the deletion reaches the bucket's nodes)") { bucket, key };
        delete.SetAction((result, ct) => ClientCommands.Run(async () =>
        {
            using var client = CommonOptions.Connect(result);
            await client.DeleteAsync(EntryPath(result.GetValue(bucket)!, result.GetValue(key)!), ct);
            Console.WriteLine($"{result.GetValue(bucket)}/{result.GetValue(key)} deleted");
            return 0;
        }));

        var list = new Command("list", "List a bucket's keys and values") { bucket, node, output };
        list.SetAction((result, ct) => ClientCommands.Run(async () =>
        {
            using var client = CommonOptions.Connect(result);
            var items = await PagesAsync(client, $"apis/outpost.dev/v1/buckets/{Uri.EscapeDataString(result.GetValue(bucket)!)}/entries?limit=1000{NodeQuery(result.GetValue(node), "&")}", ct);
            if (result.GetValue(output) == "json")
            {
                Console.WriteLine(Output.Json(new JsonArray([.. items])));
                return 0;
            }

            var perNode = items.Any(i => i["node"] is not null);
            var rows = new List<string[]> { perNode ? ["NODE", "KEY", "VALUE", "ORIGIN", "UPDATED"] : ["KEY", "VALUE", "ORIGIN", "UPDATED"] };
            foreach (var item in items)
            {
                string[] row = [(string)item["key"]!, Short(Value(item)), (string)item["origin"]!, (string)item["updateTime"]!];
                rows.Add(perNode ? [(string?)item["node"] ?? "", .. row] : row);
            }

            Console.Write(rows.Count == 1 ? "No keys found.\n" : Output.Columns(rows));
            return 0;
        }));

        var conflicts = new Command("conflicts", "Show the writes that lost a conflict, and what beat them") { bucket, output };
        conflicts.SetAction((result, ct) => ClientCommands.Run(async () =>
        {
            using var client = CommonOptions.Connect(result);
            var items = await PagesAsync(client, $"apis/outpost.dev/v1/buckets/{Uri.EscapeDataString(result.GetValue(bucket)!)}/conflicts?limit=1000", ct);
            if (result.GetValue(output) == "json")
            {
                Console.WriteLine(Output.Json(new JsonArray([.. items])));
                return 0;
            }

            var rows = new List<string[]> { ConflictHeader };
            foreach (var item in items)
            {
                var winner = item["winner"]!.AsObject();
                var loser = item["loser"]!.AsObject();
                rows.Add([(string)item["time"]!, (string)item["key"]!, Short(Value(winner)), (string)winner["origin"]!, Short(Value(loser)), (string)loser["origin"]!]);
            }

            Console.Write(rows.Count == 1 ? "No conflicts.\n" : Output.Columns(rows));
            return 0;
        }));

        return new Command("kv", "Read and write bucket data in the cloud") { get, put, delete, list, conflicts };
    }

    private static string EntryPath(string bucket, string key) =>
        $"apis/outpost.dev/v1/buckets/{Uri.EscapeDataString(bucket)}/entries/{string.Join('/', key.Split('/').Select(Uri.EscapeDataString))}";

    private static string NodeQuery(string? node, string separator) => node is null ? "" : $"{separator}node={Uri.EscapeDataString(node)}";

    private static async Task<List<JsonObject>> PagesAsync(ApiClient client, string path, CancellationToken ct)
    {
        var items = new List<JsonObject>();
        var next = "";
        do
        {
            var page = await client.GetAsync(path + (next.Length > 0 ? "&continue=" + Uri.EscapeDataString(next) : ""), ct);
            items.AddRange(page["items"]!.AsArray().Select(i => i!.DeepClone().AsObject()));
            next = (string?)page["metadata"]?["continue"] ?? "";
        }
        while (next.Length > 0);
        return items;
    }

    private static string Value(JsonObject version) =>
        version["deleted"] is not null ? "<deleted>" : version["text"] is { } text ? (string)text! : "base64:" + (string)version["value"]!;

    private static string Short(string value) => value.Length > 40 ? value[..37] + "..." : value.ReplaceLineEndings(" ");

    private static async Task<byte[]> ReadStdinAsync(CancellationToken ct)
    {
        using var buffer = new MemoryStream();
        await Console.OpenStandardInput().CopyToAsync(buffer, ct);
        return buffer.ToArray();
    }
}
