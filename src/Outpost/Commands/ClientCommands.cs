using System.CommandLine;
using System.Text.Json.Nodes;
using Outpost.Client;
using Outpost.Core.Manifests;
using Outpost.Core.Resources;

namespace Outpost.Commands;

/// <summary>The kubectl-like verbs: apply, get, describe, delete, push, token.</summary>
internal static class ClientCommands
{
    public static Command Apply()
    {
        var file = new Option<string[]>("--filename", "-f") { Description = "A manifest file, or a directory of .yaml/.yml/.json files; repeat it (or separate with commas) for more", Required = true };
        var dryRun = new Option<bool>("--dry-run") { Description = "Validate on the server without applying anything" };
        var command = new Command("apply", "Create or update resources from YAML manifests, all or nothing") { file, dryRun };
        command.SetAction((result, ct) => Run(async () =>
        {
            var set = ManifestSet.Load(result.GetValue(file)!);
            using var client = CommonOptions.Connect(result);
            var items = await set.ResolveModulesAsync(client, ct);
            var path = "apis/outpost.dev/v1/apply" + (result.GetValue(dryRun) ? "?dryRun=All" : "");
            JsonObject response;
            try
            {
                response = await client.PostAsync(path, new JsonObject { ["kind"] = "List", ["apiVersion"] = "v1", ["items"] = items }, ct);
            }
            catch (ApiException ex) when (ex.Status?["details"]?["causes"] is JsonArray causes && causes.Count > 0)
            {
                throw new ManifestException([.. causes.Select(c => Locate(set, (string?)c?["field"] ?? "", (string?)c?["message"] ?? ""))]);
            }
            if (result.GetValue(dryRun))
            {
                Console.WriteLine($"{items.Count} resource(s) valid (dry run): nothing applied");
                return 0;
            }

            foreach (var item in response["items"]!.AsArray())
            {
                var obj = item!["object"]!;
                Console.WriteLine($"{Qualified((string)obj["kind"]!)}/{obj["metadata"]!["name"]} {item["outcome"]}");
            }

            return 0;
        }));
        return command;
    }

    public static Command Get()
    {
        var type = new Argument<string>("type") { Description = string.Join(", ", ResourceKind.UserNames) + " (singular names work too)" };
        var name = new Argument<string?>("name") { Description = "Show one resource", Arity = ArgumentArity.ZeroOrOne };
        RejectOptionLike(name);
        var output = new Option<string>("--output", "-o") { Description = "table, wide, json or yaml", DefaultValueFactory = _ => "table" };
        output.AcceptOnlyFromAmong("table", "wide", "json", "yaml");
        var selector = new Option<string?>("--selector", "-l") { Description = "Label selector, e.g. site=lab,tier!=test" };
        var reveal = new Option<bool>("--reveal") { Description = "Show secret values (admin tokens only); otherwise they read <redacted>" };
        var watch = new Option<bool>("--watch", "-w") { Description = "After the table, print a row each time an object changes, until Ctrl-C" };
        var watchEvents = new Option<bool>("--output-watch-events") { Description = "With --watch: an EVENT column says ADDED, MODIFIED or DELETED" };
        var command = new Command("get", "List resources of a type, or show one") { type, name, output, selector, reveal, watch, watchEvents };
        command.SetAction((result, ct) => Run(async () =>
        {
            var kind = ResolveKind(result.GetValue(type)!);
            using var client = CommonOptions.Connect(result);
            var one = result.GetValue(name);
            var query = result.GetValue(selector) is { } s && one is null ? "?labelSelector=" + Uri.EscapeDataString(s) : "";
            if (result.GetValue(reveal))
            {
                query += (query.Length == 0 ? "?" : "&") + "reveal=true";
            }

            var format = result.GetValue(output);
            if (result.GetValue(watch))
            {
                if (format is "json" or "yaml")
                {
                    throw new ManifestException("--watch prints table rows: use it with -o table or -o wide");
                }

                if (one is not null)
                {
                    query += (query.Length == 0 ? "?" : "&") + "fieldSelector=" + Uri.EscapeDataString("metadata.name=" + one);
                }

                return await new GetWatch(client, kind, kind.CollectionPath, query, format == "wide", result.GetValue(watchEvents)).RunAsync(ct);
            }

            JsonObject response;
            if (one is null && (kind == ResourceKind.Event || kind == ResourceKind.AuditEvent))
            {
                // Paged by a cursor, oldest first: all of it, as the table shows the newest last.
                var (all, _) = await GetWatch.ReadToEndAsync(client, kind.CollectionPath, "", ct);
                response = new JsonObject { ["kind"] = kind.ListKind, ["apiVersion"] = kind.ApiVersion, ["items"] = new JsonArray([.. all]) };
            }
            else
            {
                response = await client.GetAsync(kind.CollectionPath + (one is null ? "" : "/" + Uri.EscapeDataString(one)) + query, ct);
            }

            Console.Write(format switch
            {
                "json" => Output.Json(response) + Environment.NewLine,
                "yaml" => Output.Yaml(response),
                _ => Output.Table(kind, one is null ? response["items"]!.AsArray().Select(i => i!.AsObject()) : [response], format == "wide", DateTimeOffset.UtcNow),
            });
            return 0;
        }));
        return command;
    }

    public static Command Describe()
    {
        var type = new Argument<string>("type") { Description = "node, app, or any type `get` takes that has names" };
        var name = new Argument<string>("name") { Description = "The resource's name" };
        var command = new Command("describe", "Show a node or app in detail: its status in words, then its latest events") { type, name };
        command.SetAction((result, ct) => Run(async () =>
        {
            var kind = ResolveKind(result.GetValue(type)!);
            using var client = CommonOptions.Connect(result);
            var one = result.GetValue(name)!;
            var response = await client.GetAsync($"{kind.CollectionPath}/{Uri.EscapeDataString(one)}", ct);
            var (events, _) = await GetWatch.ReadToEndAsync(client, $"{ResourceKind.Event.CollectionPath}?fieldSelector={Uri.EscapeDataString("involvedObject.name=" + one)}", "", ct);
            var about = events.Where(e => (string?)e["involvedObject"]?["kind"] == kind.Kind).TakeLast(DescribedEvents).ToList();
            Console.Write(Output.Describe(response, about, DateTimeOffset.UtcNow));
            return 0;
        }));
        return command;
    }

    public static Command Delete()
    {
        var type = new Argument<string?>("type") { Description = "app or node", Arity = ArgumentArity.ZeroOrOne };
        var name = new Argument<string?>("name") { Description = "The resource's name", Arity = ArgumentArity.ZeroOrOne };
        RejectOptionLike(name);
        var file = new Option<string[]>("--filename", "-f") { Description = "Delete the resources manifest files or directories define (repeat it, or separate with commas)" };
        var command = new Command("delete", "Delete an app or node by name, or what a manifest defines") { type, name, file };
        command.SetAction((result, ct) => Run(async () =>
        {
            var targets = new List<(ResourceKind Kind, string Name)>();
            if (result.GetValue(file) is { Length: > 0 } path)
            {
                if (result.GetValue(type) is not null)
                {
                    throw new ManifestException("give either TYPE NAME or -f FILE, not both");
                }

                foreach (var doc in ManifestSet.Load(path).Documents)
                {
                    targets.Add((ResourceKind.FindByKind((string)doc.Body["kind"]!)!, (string)doc.Body["metadata"]!["name"]!));
                }
            }
            else if (result.GetValue(type) is { } t && result.GetValue(name) is { } n)
            {
                targets.Add((ResolveKind(t), n));
            }
            else
            {
                throw new ManifestException("what to delete: give TYPE NAME (e.g. `outpost delete app hello`) or -f FILE");
            }

            using var client = CommonOptions.Connect(result);
            var failed = 0;
            foreach (var (kind, target) in targets)
            {
                try
                {
                    await client.DeleteAsync($"{kind.CollectionPath}/{Uri.EscapeDataString(target)}", ct);
                    Console.WriteLine($"{Qualified(kind.Kind)} \"{target}\" deleted");
                }
                catch (ApiException ex) when (ex.Code == 404)
                {
                    Console.Error.WriteLine($"error: {ex.Message}");
                    failed++;
                }
            }

            return failed == 0 ? 0 : 1;
        }));
        return command;
    }

    public static Command Push()
    {
        var file = new Argument<string>("file") { Description = "A .wasm module, or an image archive (OCI archive or `docker save` tar)" };
        var image = new Option<string?>("--image") { Description = "For an image archive: NAME:TAG to push it as (default: the name the archive gives)" };
        var command = new Command("push", "Upload a module and print its digest, or push an image archive to the server's registry and print NAME:TAG@DIGEST") { file, image };
        command.SetAction((result, ct) => Run(async () =>
        {
            using var client = CommonOptions.Connect(result);
            var path = Path.GetFullPath(result.GetValue(file)!);
            if (File.Exists(path) && ImagePush.IsArchive(path))
            {
                try
                {
                    Console.WriteLine(await ImagePush.PushAsync(client, path, result.GetValue(image), ct));
                }
                catch (Containers.Images.ImageException ex)
                {
                    throw new ManifestException($"'{path}': {ex.Message}");
                }

                return 0;
            }

            Console.WriteLine(await ManifestSet.UploadAsync(client, path, ct));
            return 0;
        }));
        return command;
    }

    public static Command Exec()
    {
        var node = new Argument<string>("node") { Description = "The node: node/NAME or NAME" };
        var app = new Argument<string>("app") { Description = "The container app: app/NAME or NAME" };
        var argv = new Argument<string[]>("command") { Description = "The command and its arguments, after --", Arity = ArgumentArity.OneOrMore };
        var command = new Command("exec", "Run a command in a container app on a node (as kubectl exec): prints its output, exits with its exit code; admins only, audited") { node, app, argv };
        command.SetAction((result, ct) => Run(async () =>
        {
            using var client = CommonOptions.Connect(result);
            var nodeName = StripPrefix(result.GetValue(node)!, "node/", "nodes/");
            var appName = StripPrefix(result.GetValue(app)!, "app/", "apps/");
            var answer = await client.PostAsync($"/proxy/exec/{Uri.EscapeDataString(nodeName)}/{Uri.EscapeDataString(appName)}",
                new System.Text.Json.Nodes.JsonObject { ["command"] = new System.Text.Json.Nodes.JsonArray([.. result.GetValue(argv)!.Select(a => (System.Text.Json.Nodes.JsonNode)a)]) }, ct);
            Console.Out.Write((string?)answer["stdout"] ?? "");
            Console.Error.Write((string?)answer["stderr"] ?? "");
            return (int?)answer["exitCode"] ?? 1;
        }));
        return command;
    }

    private static string StripPrefix(string value, params string[] prefixes) =>
        prefixes.FirstOrDefault(p => value.StartsWith(p, StringComparison.Ordinal)) is { } prefix ? value[prefix.Length..] : value;

    public static Command Token()
    {
        var ttl = new Option<string?>("--ttl") { Description = "Lifetime, e.g. 30m, 24h, 7d (default: no expiry)" };
        var uses = new Option<int?>("--uses") { Description = "How many nodes may join with it (default: no limit)" };
        var labels = new Option<string?>("--labels") { Description = "Labels every node joining with it gets, k=v,k2=v2 (they override the node's own)" };
        var api = new Option<bool>("--api") { Description = "An API token (for people and tools) instead of a join token" };
        var role = new Option<string>("--role") { Description = "With --api: admin (may change anything) or viewer (may only read)", DefaultValueFactory = _ => "viewer" };
        role.AcceptOnlyFromAmong(Core.Tokens.Roles.All.ToArray());
        var description = new Option<string?>("--description") { Description = "What the token is for (shown in token list and the audit log)" };
        var create = new Command("create", "Create a join token for agents (or with --api an API token) and print it; the secret is shown only now") { ttl, uses, labels, api, role, description };
        create.SetAction((result, ct) => Run(async () =>
        {
            var body = new JsonObject { ["kind"] = result.GetValue(api) ? "api" : "join" };
            if (result.GetValue(ttl) is { } text)
            {
                body["ttlSeconds"] = (long)ParseDuration(text).TotalSeconds;
            }

            if (result.GetValue(api))
            {
                body["role"] = result.GetValue(role);
            }

            if (result.GetValue(uses) is { } n)
            {
                body["uses"] = n;
            }

            if (result.GetValue(labels) is { } l)
            {
                body["labels"] = ResourceJson.ToJson(ParseLabelList(l));
            }

            if (result.GetValue(description) is { } d)
            {
                body["description"] = d;
            }

            using var client = CommonOptions.Connect(result);
            var response = await client.PostAsync("apis/outpost.dev/v1/tokens", body, ct);
            Console.WriteLine((string)response["token"]!);
            return 0;
        }));

        var output = new Option<string>("--output", "-o") { Description = "table or json", DefaultValueFactory = _ => "table" };
        output.AcceptOnlyFromAmong("table", "json");
        var list = new Command("list", "List tokens: what each is for, its uses and expiry (never a secret)") { output };
        list.SetAction((result, ct) => Run(async () =>
        {
            using var client = CommonOptions.Connect(result);
            var response = await client.GetAsync("apis/outpost.dev/v1/tokens", ct);
            if (result.GetValue(output) == "json")
            {
                Console.WriteLine(Output.Json(response));
                return 0;
            }

            var rows = new List<string[]> { TokenHeader };
            foreach (var item in response["items"]!.AsArray().Select(i => i!.AsObject()))
            {
                var usesText = item["maxUses"] is { } max ? $"{item["uses"]}/{max}" : item["uses"]?.ToString() ?? "";
                rows.Add([(string)item["metadata"]!["name"]!, (string)item["type"]!, (string?)item["role"] ?? (string?)item["node"] ?? "", usesText,
                    (string?)item["expiresAt"] ?? "never", (string?)item["description"] ?? ""]);
            }

            Console.Write(Output.Columns(rows));
            return 0;
        }));

        var id = new Argument<string>("id") { Description = "The token's id (the NAME column of token list)" };
        var revoke = new Command("revoke", "Revoke a token: it stops working at once") { id };
        revoke.SetAction((result, ct) => Run(async () =>
        {
            using var client = CommonOptions.Connect(result);
            await client.DeleteAsync($"apis/outpost.dev/v1/tokens/{Uri.EscapeDataString(result.GetValue(id)!)}", ct);
            Console.WriteLine($"token {result.GetValue(id)} revoked");
            return 0;
        }));
        return new Command("token", "Manage join tokens and API tokens") { create, list, revoke };
    }

    private static readonly string[] TokenHeader = ["NAME", "TYPE", "ROLE/NODE", "USES", "EXPIRES", "DESCRIPTION"];

    private static Dictionary<string, string> ParseLabelList(string text)
    {
        try
        {
            return Core.Selectors.Labels.ParseList(text);
        }
        catch (FormatException ex)
        {
            throw new ManifestException($"--labels: {ex.Message}");
        }
    }

    internal static TimeSpan ParseDuration(string text) =>
        Durations.TryParse(text, out var value) && value >= TimeSpan.FromSeconds(1)
            ? value
            : throw new ManifestException($"--ttl '{text}' is not a duration: use a number and s, m, h or d (e.g. 24h)");

    /// <summary>An unknown flag would otherwise be taken as a resource name; say what it is.</summary>
    private static void RejectOptionLike(Argument<string?> argument) =>
        argument.Validators.Add(result =>
        {
            if (result.GetValueOrDefault<string?>() is { } value && value.StartsWith('-'))
            {
                result.AddError($"unknown option '{value}'");
            }
        });

    /// <summary>How many of an object's events describe shows, the latest.</summary>
    private const int DescribedEvents = 20;

    private static ResourceKind ResolveKind(string type)
    {
        if (ResourceKind.FindByUserName(type) is { } kind)
        {
            return kind;
        }

        var hint = type.ToLowerInvariant() is "po" or "pod" or "pods" or "deploy" or "deployment" or "deployments" or "rs" or "replicasets"
            ? " (an Outpost app is the Deployment and its pods in one: try apps)"
            : ResourceKind.Suggest(type) is { } near ? $" (did you mean {near}?)" : "";
        throw new ManifestException($"unknown resource type '{type}'{hint}: use one of {string.Join(", ", ResourceKind.UserNames)}");
    }

    /// <summary>A server's cause about items[i] of an apply, told as the file and document it came from.</summary>
    private static string Locate(ManifestSet set, string field, string message)
    {
        var match = System.Text.RegularExpressions.Regex.Match(field, @"^items\[(\d+)\](?: \([^)]*\))?\.?(.*)$");
        return match.Success && int.TryParse(match.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture, out var i) && i < set.Documents.Count
            ? $"{set.Documents[i].Location}: {match.Groups[2].Value}: {message}"
            : $"{field}: {message}";
    }

    private static string Qualified(string kind) => kind == "Node" ? "node" : $"{kind.ToLowerInvariant()}.outpost.dev";

    /// <summary>
    /// Turns failures into one line on stderr and exit code 1. Anything unexpected is a bug, but
    /// a user still gets one line, not a stack trace (OUTPOST_DEBUG=1 shows it).
    /// </summary>
    internal static async Task<int> Run(Func<Task<int>> action)
    {
        try
        {
            return await action();
        }
        catch (ManifestException ex)
        {
            foreach (var error in ex.Errors)
            {
                Console.Error.WriteLine($"error: {error}");
            }

            return 1;
        }
        catch (ApiException ex)
        {
            Console.Error.WriteLine($"error: {ex.Message}");
            return 1;
        }
        catch (Exception ex) when (ex is not OperationCanceledException && Environment.GetEnvironmentVariable("OUTPOST_DEBUG") != "1")
        {
            Console.Error.WriteLine($"error: {ex.Message} ({ex.GetType().Name}; OUTPOST_DEBUG=1 shows where)");
            return 1;
        }
    }
}
