using System.CommandLine;
using System.Text.Json.Nodes;

namespace Outpost.Commands;

/// <summary>
/// `outpost rollout status|history|undo|pause|resume app/NAME`: an Application's rollout and
/// revisions, and going back to one.
/// </summary>
internal static class RolloutCommands
{
    private static readonly string[] HistoryHeader = ["REVISION", "CREATED", "DIGEST", "CHANGE", "OUTCOME", ""];
    private static readonly string[] NodeHeader = ["NODE", "STATE", "DESIRED", "RUNNING", "APP", "MESSAGE"];

    /// <summary>
    /// What revision i (newest first) changed against the one before it: the same spec as an
    /// older kept revision (an undo), the spec paths that differ, or "created" for the first.
    /// </summary>
    private static string Change(List<JsonObject> items, int i)
    {
        var spec = items[i]["spec"] as JsonObject ?? [];
        if (i + 1 >= items.Count)
        {
            return (long?)items[i]["revision"] == 1 ? "created" : "-";
        }

        if (items.Skip(i + 2).FirstOrDefault(older => JsonNode.DeepEquals(older["spec"], spec)) is { } same)
        {
            return $"same as revision {same["revision"]}";
        }

        var changed = Core.Resources.SpecChanges.Between(items[i + 1]["spec"] as JsonObject ?? [], spec);
        return changed.Count switch
        {
            0 => "-",
            <= 3 => string.Join(", ", changed),
            _ => $"{string.Join(", ", changed.Take(3))} +{changed.Count - 3}",
        };
    }

    public static Command Rollout()
    {
        var target = new Argument<string>("app") { Description = "The application, as app/NAME or NAME" };
        var history = new Command("history", "List an app's revisions (each spec change is one), newest first") { target };
        history.SetAction((result, ct) => ClientCommands.Run(async () =>
        {
            using var client = CommonOptions.Connect(result);
            var response = await client.GetAsync($"apis/outpost.dev/v1/applications/{Uri.EscapeDataString(AppName(result.GetValue(target)!))}/revisions", ct);
            var rows = new List<string[]> { HistoryHeader };
            var items = response["items"]!.AsArray().Select(i => i!.AsObject()).ToList();
            for (var i = 0; i < items.Count; i++)
            {
                var item = items[i];
                var digest = (string?)item["digest"] ?? "";
                rows.Add([item["revision"]!.ToString(), (string)item["creationTimestamp"]!, digest.Length > 19 ? digest[..19] : digest, Change(items, i),
                    (string?)item["outcome"] is { Length: > 0 } outcome ? outcome : "-", (bool?)item["current"] == true ? "(current)" : ""]);
            }

            Console.Write(Client.Output.Columns(rows));
            return 0;
        }));

        var toRevision = new Option<long?>("--to-revision") { Description = "The revision to go back to (default: the one before the current)" };
        var undo = new Command("undo", "Go back to an earlier revision: its spec becomes the next revision and goes to every node of the app at once") { target, toRevision };
        undo.SetAction((result, ct) => ClientCommands.Run(async () =>
        {
            using var client = CommonOptions.Connect(result);
            var body = new JsonObject();
            if (result.GetValue(toRevision) is { } revision)
            {
                body["toRevision"] = revision;
            }

            var name = AppName(result.GetValue(target)!);
            var response = await client.PostAsync($"apis/outpost.dev/v1/applications/{Uri.EscapeDataString(name)}/rollback", body, ct);
            var now = response["object"]!["metadata"]!["generation"];
            Console.WriteLine((string?)response["outcome"] == "unchanged"
                ? $"application.outpost.dev/{name} already runs revision {response["toRevision"]}'s spec (revision {now}): nothing changed"
                : $"application.outpost.dev/{name} rolled back to revision {response["toRevision"]}: revision {now} carries its spec to every node at once");
            return 0;
        }));
        var watch = new Option<bool>("--watch", "-w") { Description = "Follow the rollout until it ends: exit 0 when it succeeds, 1 when it fails or rolls back" };
        var status = new Command("status", "Show the rollout of an app's latest revision: steps, nodes, gates; exits 1 if it failed or rolled back") { target, watch };
        status.SetAction((result, ct) => ClientCommands.Run(async () =>
        {
            using var client = CommonOptions.Connect(result);
            var name = AppName(result.GetValue(target)!);
            var path = $"apis/outpost.dev/v1/applications/{Uri.EscapeDataString(name)}/rollout";
            var follow = result.GetValue(watch);
            var live = follow && !Console.IsOutputRedirected;
            var drawn = 0;
            var last = "";
            while (true)
            {
                var rollout = await client.GetAsync(path, ct);
                var phase = (string?)rollout["status"]?["phase"] ?? "Succeeded";
                if (!follow)
                {
                    Console.Write(Describe(rollout));
                    Console.Write(Client.Output.Columns(NodeRows(rollout)));
                }
                else if (live)
                {
                    // A terminal: redraw the block in place.
                    var block = Describe(rollout);
                    Console.Write(drawn > 0 ? $"\u001b[{drawn}A" : "");
                    foreach (var line in block.TrimEnd('\n').Split('\n'))
                    {
                        Console.Write("\u001b[2K" + line + "\n");
                    }

                    drawn = block.TrimEnd('\n').Split('\n').Length;
                }
                else
                {
                    // Plain lines, one per change.
                    var line = Summary(rollout);
                    if (line != last)
                    {
                        Console.WriteLine($"{DateTime.Now:HH:mm:ss} {line}");
                        last = line;
                    }
                }

                if (!follow || phase is "Succeeded" or "RolledBack" or "Failed")
                {
                    return phase is "RolledBack" or "Failed" ? 1 : 0;
                }

                await Task.Delay(TimeSpan.FromMilliseconds(500), ct);
            }
        }));

        var pause = new Command("pause", "Hold an app's rollout where it is: no more nodes move; gates keep watching") { target };
        pause.SetAction((result, ct) => ClientCommands.Run(() => PauseAsync(result, target, "pause", ct)));
        var resume = new Command("resume", "Continue a paused rollout") { target };
        resume.SetAction((result, ct) => ClientCommands.Run(() => PauseAsync(result, target, "resume", ct)));
        return new Command("rollout", "An app's rollouts and revisions: status, history, undo, pause, resume") { status, history, undo, pause, resume };
    }

    private static async Task<int> PauseAsync(ParseResult result, Argument<string> target, string verb, CancellationToken ct)
    {
        using var client = CommonOptions.Connect(result);
        var name = AppName(result.GetValue(target)!);
        var response = await client.PostAsync($"apis/outpost.dev/v1/applications/{Uri.EscapeDataString(name)}/rollout/{verb}", new JsonObject(), ct);
        Console.WriteLine($"application.outpost.dev/{name} rollout of revision {response["status"]!["revision"]} {verb}d");
        return 0;
    }

    /// <summary>One line: revision, phase and the controller's message.</summary>
    private static string Summary(JsonObject rollout)
    {
        var status = rollout["status"] as JsonObject;
        var revision = status?["revision"] ?? rollout["metadata"]!["generation"];
        return $"revision {revision} {(string?)status?["phase"] ?? "Succeeded"}: {(string?)status?["message"] ?? ""}";
    }

    /// <summary>The rollout as a block: what moves from where, then a bar per step (nodes ready at the revision out of the step's nodes).</summary>
    private static string Describe(JsonObject rollout)
    {
        var status = rollout["status"] as JsonObject;
        var text = new System.Text.StringBuilder();
        var revision = (long?)status?["revision"] ?? (long)rollout["metadata"]!["generation"]!;
        var stable = (long?)status?["stableRevision"] ?? 0;
        var strategy = (string?)status?["strategy"] ?? (string?)rollout["spec"]!["strategy"];
        text.Append(System.Globalization.CultureInfo.InvariantCulture, $"application {rollout["metadata"]!["name"]}: revision {revision} ({strategy}{(stable > 0 && stable != revision ? $" from revision {stable}" : "")})\n");
        var phase = (string?)status?["phase"] ?? "Succeeded";
        var step = (int?)status?["step"] ?? 0;
        var ready = rollout["nodes"]!.AsArray().Count(n => (long?)n!["revision"] == revision && (string?)n["appState"] == "Ready");
        var plan = rollout["spec"]!["plan"]!.AsArray();
        for (var i = 0; i < plan.Count; i++)
        {
            var nodes = (int)plan[i]!["nodes"]!;
            var done = Math.Min(ready, nodes);
            var width = 20;
            var filled = nodes == 0 ? width : done * width / nodes;
            var state = phase == "Succeeded" || i < step ? "done"
                : i > step ? ""
                : phase is "RolledBack" or "Failed" ? phase.ToLowerInvariant()
                : phase == "Paused" ? "paused"
                : "in progress";
            var pause = (string?)plan[i]!["pause"] is { } p ? $", pause {p}" : "";
            text.Append(System.Globalization.CultureInfo.InvariantCulture,
                $"  step {i + 1}/{plan.Count} [{new string('#', filled)}{new string('.', width - filled)}] {done}/{nodes} nodes{pause}  {state}\n");
        }

        text.Append(System.Globalization.CultureInfo.InvariantCulture, $"  {phase}: {(string?)status?["message"] ?? ""}\n");
        return text.ToString();
    }

    private static List<string[]> NodeRows(JsonObject rollout)
    {
        var rows = new List<string[]> { NodeHeader };
        foreach (var node in rollout["nodes"]!.AsArray().Select(n => n!.AsObject()))
        {
            rows.Add([(string)node["name"]!, (string?)node["state"] ?? "", node["desiredRevision"]?.ToString() ?? "", node["revision"]?.ToString() ?? "-",
                (string?)node["appState"] ?? "-", (string?)node["message"] ?? ""]);
        }

        return rows;
    }

    private static string AppName(string text) =>
        text.Split('/', 2) is [var kind, var name] && kind is "app" or "apps" or "application" or "applications" ? name : text;
}
