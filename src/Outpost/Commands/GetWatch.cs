using System.Globalization;
using System.Text.Json.Nodes;
using Outpost.Client;
using Outpost.Core.Resources;

namespace Outpost.Commands;

/// <summary>
/// `get -w`, as kubectl's: the table as it is, then one row each time an object changes what the
/// table shows (never a row for AGE alone). Stored kinds follow the server's watch; events and
/// the audit log follow their cursor; alerts and topics, which the server derives, are listed
/// again every two seconds and only changed rows printed.
/// </summary>
internal sealed class GetWatch(ApiClient client, ResourceKind kind, string path, string query, bool wide, bool showEvents)
{
    private static readonly TimeSpan PollPeriod = TimeSpan.FromSeconds(2);

    // The last row printed per object, less AGE, so that only what changed is printed again.
    private readonly Dictionary<string, string> _printed = new(StringComparer.Ordinal);
    private int[]? _widths;
    private int _age = -1;

    public async Task<int> RunAsync(CancellationToken ct)
    {
        try
        {
            // Services are read back with their endpoints, computed, not a stored object's watch: polled.
            if (ResourceKind.All.Contains(kind) && kind != ResourceKind.NetworkService)
            {
                await FollowWatchAsync(ct);
            }
            else if (kind == ResourceKind.Event || kind == ResourceKind.AuditEvent)
            {
                await FollowCursorAsync(ct);
            }
            else
            {
                await PollAsync(ct);
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            // Ctrl-C: the watch is over.
        }

        return 0;
    }

    private async Task FollowWatchAsync(CancellationToken ct)
    {
        var list = await client.GetAsync(path + query, ct);
        Print("", list["items"]!.AsArray().OfType<JsonObject>().ToList());
        var separator = query.Length == 0 ? "?" : "&";
        while (!ct.IsCancellationRequested)
        {
            // From scratch each time: the server sends every object as ADDED first, and the rows
            // printed already are not printed again; nothing that changed in between is missed.
            await foreach (var change in client.WatchAsync($"{path}{query}{separator}watch=true&timeoutSeconds=300", ct))
            {
                if (change["object"] is JsonObject item)
                {
                    Print((string?)change["type"] ?? "", [item]);
                }
            }
        }
    }

    private async Task FollowCursorAsync(CancellationToken ct)
    {
        var (items, cursor) = await ReadToEndAsync(client, path, "", ct);
        Print("", items);
        while (!ct.IsCancellationRequested)
        {
            await Task.Delay(TimeSpan.FromSeconds(1), ct);
            (items, var next) = await ReadToEndAsync(client, path, cursor, ct);
            cursor = next.Length > 0 ? next : cursor;
            Print("ADDED", items);
        }
    }

    private async Task PollAsync(CancellationToken ct)
    {
        while (true)
        {
            var list = await client.GetAsync(path + query, ct);
            Print(_widths is null ? "" : "MODIFIED", list["items"]!.AsArray().OfType<JsonObject>().ToList());
            await Task.Delay(PollPeriod, ct);
        }
    }

    /// <summary>
    /// Every item of a cursor-paged list (events, audit) after <paramref name="after"/>, and the
    /// cursor of the last one for the next look.
    /// </summary>
    public static async Task<(List<JsonObject> Items, string Cursor)> ReadToEndAsync(ApiClient client, string path, string after, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(client);
        var items = new List<JsonObject>();
        var cursor = after;
        while (true)
        {
            var page = await client.GetAsync(path + (path.Contains('?', StringComparison.Ordinal) ? "&" : "?") + "continue=" + Uri.EscapeDataString(cursor), ct);
            var array = page["items"]!.AsArray();
            var pageItems = array.OfType<JsonObject>().ToList();
            array.Clear(); // the items leave their page, free to join another list
            items.AddRange(pageItems);
            if (pageItems.Count > 0)
            {
                // An event is NAME.ID, an audit entry ID: the id is the cursor of what follows it.
                var name = (string)pageItems[^1]["metadata"]!["name"]!;
                cursor = name[(name.LastIndexOf('.') + 1)..];
            }

            if (string.IsNullOrEmpty((string?)page["metadata"]?["continue"]))
            {
                return (items, cursor);
            }
        }
    }

    private void Print(string type, List<JsonObject> items)
    {
        var rows = Output.Rows(kind, items, wide, DateTimeOffset.UtcNow);
        var header = rows[0];
        if (_widths is null)
        {
            _age = Array.IndexOf(header, "AGE");
            _widths = Output.Widths(rows);
            if (showEvents)
            {
                _widths = [5 + 3, .. _widths];
            }

            Console.WriteLine(Output.Line(showEvents ? ["EVENT", .. header] : header, _widths));
        }

        for (var i = 1; i < rows.Count; i++)
        {
            var row = rows[i];
            var key = Key(items[i - 1], row);
            var shown = string.Join('\u001f', row.Where((_, index) => index != _age));
            if (type != "DELETED" && _printed.TryGetValue(key, out var before) && before == shown)
            {
                continue;
            }

            if (type == "DELETED")
            {
                _printed.Remove(key);
            }
            else
            {
                // A fresh watch sends every object as ADDED: one already printed has changed.
                type = type == "ADDED" && _printed.ContainsKey(key) ? "MODIFIED" : type;
                _printed[key] = shown;
            }

            Console.WriteLine(Output.Line(showEvents ? [type.Length == 0 ? "ADDED" : type, .. row] : row, _widths));
        }

        Console.Out.Flush();
    }

    /// <summary>What identifies an object across looks: its name, or an alert's rule and target.</summary>
    private string Key(JsonObject item, string[] row) =>
        kind == ResourceKind.Alert ? string.Create(CultureInfo.InvariantCulture, $"{row[0]}\u001f{row[1]}")
            : (string?)item["metadata"]?["name"] ?? row[0];
}
