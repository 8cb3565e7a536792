using System.CommandLine;
using System.Text.Json.Nodes;

namespace Outpost.Commands;

/// <summary>`outpost rollout history|undo app/NAME`: an Application's revisions, and going back to one.</summary>
internal static class RolloutCommands
{
    private static readonly string[] HistoryHeader = ["REVISION", "CREATED", "DIGEST", ""];

    public static Command Rollout()
    {
        var target = new Argument<string>("app") { Description = "The application, as app/NAME or NAME" };
        var history = new Command("history", "List an app's revisions (each spec change is one), newest first") { target };
        history.SetAction((result, ct) => ClientCommands.Run(async () =>
        {
            using var client = CommonOptions.Connect(result);
            var response = await client.GetAsync($"apis/outpost.dev/v1/applications/{Uri.EscapeDataString(AppName(result.GetValue(target)!))}/revisions", ct);
            var rows = new List<string[]> { HistoryHeader };
            foreach (var item in response["items"]!.AsArray().Select(i => i!.AsObject()))
            {
                var digest = (string?)item["digest"] ?? "";
                rows.Add([item["revision"]!.ToString(), (string)item["creationTimestamp"]!, digest.Length > 19 ? digest[..19] : digest,
                    (bool?)item["current"] == true ? "(current)" : ""]);
            }

            Console.Write(Client.Output.Columns(rows));
            return 0;
        }));

        var toRevision = new Option<long?>("--to-revision") { Description = "The revision to go back to (default: the one before the current)" };
        var undo = new Command("undo", "Go back to an earlier revision: it becomes the next generation and rolls out to the app's nodes") { target, toRevision };
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
            Console.WriteLine($"application.outpost.dev/{name} rolled back to revision {response["toRevision"]} ({response["outcome"]}, now generation {response["object"]!["metadata"]!["generation"]})");
            return 0;
        }));
        return new Command("rollout", "An app's revisions: history and undo") { history, undo };
    }

    private static string AppName(string text) =>
        text.Split('/', 2) is [var kind, var name] && kind is "app" or "apps" or "application" or "applications" ? name : text;
}
