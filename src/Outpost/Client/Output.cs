using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using Outpost.Core.Resources;

namespace Outpost.Client;

/// <summary>Renders API objects as tables (kubectl-like), JSON or YAML.</summary>
internal static class Output
{
    public static string Json(JsonNode node) => node.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true });

    /// <summary>
    /// YAML as kubectl prints it (block style, strings quoted only where YAML would read them as
    /// something else), written through YamlDotNet's emitter: no reflection, so AOT-safe.
    /// </summary>
    public static string Yaml(JsonNode? node)
    {
        using var writer = new StringWriter(CultureInfo.InvariantCulture);
        var emitter = new YamlDotNet.Core.Emitter(writer);
        emitter.Emit(new YamlDotNet.Core.Events.StreamStart());
        emitter.Emit(new YamlDotNet.Core.Events.DocumentStart(null, null, true));
        Emit(emitter, node);
        emitter.Emit(new YamlDotNet.Core.Events.DocumentEnd(true));
        emitter.Emit(new YamlDotNet.Core.Events.StreamEnd());
        return writer.ToString();
    }

    private static void Emit(YamlDotNet.Core.IEmitter emitter, JsonNode? node)
    {
        switch (node)
        {
            case JsonObject obj:
                emitter.Emit(new YamlDotNet.Core.Events.MappingStart());
                foreach (var (key, value) in obj)
                {
                    Scalar(emitter, key, isString: true);
                    Emit(emitter, value);
                }

                emitter.Emit(new YamlDotNet.Core.Events.MappingEnd());
                break;
            case JsonArray array:
                emitter.Emit(new YamlDotNet.Core.Events.SequenceStart(null, null, false, YamlDotNet.Core.Events.SequenceStyle.Block));
                foreach (var item in array)
                {
                    Emit(emitter, item);
                }

                emitter.Emit(new YamlDotNet.Core.Events.SequenceEnd());
                break;
            case JsonValue value when value.TryGetValue<string>(out var text):
                Scalar(emitter, text, isString: true);
                break;
            case null:
                Scalar(emitter, "null", isString: false);
                break;
            default:
                Scalar(emitter, node.ToJsonString(), isString: false); // numbers and booleans as JSON writes them
                break;
        }
    }

    private static void Scalar(YamlDotNet.Core.IEmitter emitter, string text, bool isString)
    {
        var style = !isString ? YamlDotNet.Core.ScalarStyle.Plain
            : NeedsQuotes(text) ? YamlDotNet.Core.ScalarStyle.DoubleQuoted
            : text.Contains('\n', StringComparison.Ordinal) ? YamlDotNet.Core.ScalarStyle.Literal
            : YamlDotNet.Core.ScalarStyle.Any;
        emitter.Emit(new YamlDotNet.Core.Events.Scalar(null, null, text, style, true, true));
    }

    /// <summary>A string that YAML's core schema would read as null, a boolean or a number, or that is empty or padded.</summary>
    private static bool NeedsQuotes(string text) =>
        text.Length == 0 || char.IsWhiteSpace(text[0]) || char.IsWhiteSpace(text[^1])
        || text is "~" or "null" or "Null" or "NULL" or "true" or "True" or "TRUE" or "false" or "False" or "FALSE"
            or "yes" or "Yes" or "YES" or "no" or "No" or "NO" or "on" or "On" or "ON" or "off" or "Off" or "OFF" or "y" or "Y" or "n" or "N"
        || System.Text.RegularExpressions.Regex.IsMatch(text, @"^[-+]?(\.?[0-9][0-9_]*(\.[0-9_]*)?([eE][-+]?[0-9]+)?|0x[0-9a-fA-F_]+|0o?[0-7_]+|\.(inf|Inf|INF|nan|NaN|NAN))$");

    public static string Table(ResourceKind kind, IEnumerable<JsonObject> items, bool wide, DateTimeOffset now)
    {
        var rows = Rows(kind, items, wide, now);
        return rows.Count == 1 ? $"No {kind.Plural} found.\n" : Columns(rows);
    }

    /// <summary>A table's rows, the header first: what <see cref="Table"/> aligns and `get -w` prints as objects change.</summary>
    public static List<string[]> Rows(ResourceKind kind, IEnumerable<JsonObject> items, bool wide, DateTimeOffset now)
    {
        ArgumentNullException.ThrowIfNull(kind);
        var rows = new List<string[]>();
        if (kind == ResourceKind.Node)
        {
            rows.Add(wide ? ["NAME", "STATUS", "REVISION", "AGE", "VERSION", "GATEWAY", "LABELS"] : ["NAME", "STATUS", "REVISION", "AGE", "VERSION"]);
            foreach (var item in items)
            {
                var status = item["status"] as JsonObject;
                string[] row = [Str(item["metadata"]?["name"]), Str(status?["state"]), Str(status?["appliedRevision"]),
                    Age(item, now), Str(status?["agentVersion"])];
                rows.Add(wide ? [.. row, Str(status?["gatewayUrl"]), Labels(item)] : row);
            }
        }
        else if (kind == ResourceKind.Topic)
        {
            rows.Add(["NAME", "RECORDS", "BYTES", "NODES", "LAST-INGEST"]);
            foreach (var item in items)
            {
                var status = item["status"] as JsonObject;
                rows.Add([Str(item["metadata"]?["name"]), Str(status?["records"]), Str(status?["bytes"]), Str(status?["nodes"]), Str(status?["lastIngestTime"])]);
            }
        }
        else if (kind == ResourceKind.Bucket)
        {
            rows.Add(["NAME", "DIRECTION", "CONFLICT-POLICY", "AGE"]);
            foreach (var item in items)
            {
                var spec = item["spec"] as JsonObject;
                rows.Add([Str(item["metadata"]?["name"]), spec?["direction"] is { } d ? Str(d) : "edge-local",
                    spec?["conflictPolicy"] is { } p ? Str(p) : "lww", Age(item, now)]);
            }
        }
        else if (kind == ResourceKind.Event)
        {
            rows.Add(["TIME", "TYPE", "REASON", "OBJECT", "MESSAGE"]);
            foreach (var item in items)
            {
                rows.Add([Str(item["lastTimestamp"]), Str(item["type"]), Str(item["reason"]),
                    $"{Str(item["involvedObject"]?["kind"]).ToLowerInvariant()}/{Str(item["involvedObject"]?["name"])}", Str(item["message"])]);
            }
        }
        else if (kind == ResourceKind.AuditEvent)
        {
            rows.Add(["TIME", "ACTOR", "ROLE", "VERB", "PATH", "STATUS", "DETAIL"]);
            foreach (var item in items)
            {
                rows.Add([Str(item["metadata"]?["creationTimestamp"]), Str(item["actor"]), Str(item["role"]), Str(item["verb"]), Str(item["path"]),
                    Str(item["status"]), Str(item["detail"])]);
            }
        }
        else if (kind == ResourceKind.AlertRule)
        {
            rows.Add(["NAME", "CONDITION", "THRESHOLD", "FOR", "SEVERITY", "RECEIVER", "AGE"]);
            foreach (var item in items)
            {
                var spec = item["spec"] as JsonObject;
                var condition = spec?["condition"];
                rows.Add([Str(item["metadata"]?["name"]), Str(condition?["type"]), condition?["threshold"] is { } t ? Str(t) : "-", spec?["for"] is { } f ? Str(f) : "0s",
                    spec?["severity"] is { } sev ? Str(sev) : "warning", spec?["receiver"]?["webhook"]?["url"] is { } url ? Str(url) : "-", Age(item, now)]);
            }
        }
        else if (kind == ResourceKind.RuntimeClass)
        {
            rows.Add(["NAME", "HANDLER", "AGE"]);
            foreach (var item in items)
            {
                rows.Add([Str(item["metadata"]?["name"]), Str(item["handler"]), Age(item, now)]);
            }
        }
        else if (kind == ResourceKind.Alert)
        {
            rows.Add(["RULE", "TARGET", "STATE", "SEVERITY", "VALUE", "SINCE", "MESSAGE"]);
            foreach (var item in items)
            {
                rows.Add([Str(item["rule"]), Str(item["target"]), Str(item["state"]), Str(item["severity"]), Str(item["value"]), Str(item["since"]), Str(item["message"])]);
            }
        }
        else if (kind == ResourceKind.NetworkService)
        {
            rows.Add(wide ? ["NAME", "ADDRESS", "PORT", "APPS", "ENDPOINTS", "AGE", "NODES"] : ["NAME", "ADDRESS", "PORT", "APPS", "ENDPOINTS", "AGE"]);
            foreach (var item in items)
            {
                var endpoints = (item["status"]?["endpoints"] as JsonArray ?? []).OfType<JsonObject>().ToList();
                string[] row = [Str(item["metadata"]?["name"]), Str(item["spec"]?["address"]), Str(item["spec"]?["port"]),
                    string.Join(',', (item["spec"]?["apps"] as JsonArray ?? []).Select(Str)),
                    string.Create(CultureInfo.InvariantCulture, $"{endpoints.Count(e => (bool?)e["healthy"] == true)}/{endpoints.Count}"), Age(item, now)];
                rows.Add(wide ? [.. row, string.Join(',', endpoints.Where(e => (bool?)e["healthy"] == true).Select(e => Str(e["node"])))] : row);
            }
        }
        else if (kind == ResourceKind.ConfigSet || kind == ResourceKind.Secret)
        {
            rows.Add(wide ? ["NAME", "KEYS", "AGE", "NODE-SELECTOR"] : ["NAME", "KEYS", "AGE"]);
            foreach (var item in items)
            {
                var spec = item["spec"] as JsonObject;
                string[] row = [Str(item["metadata"]?["name"]), ((spec?["data"] as JsonObject)?.Count ?? 0).ToString(CultureInfo.InvariantCulture), Age(item, now)];
                rows.Add(wide ? [.. row, Selector(spec)] : row);
            }
        }
        else
        {
            // READY: the nodes serving the current revision Ready, of those the app targets.
            rows.Add(wide ? ["NAME", "REVISION", "READY", "ROLLOUT", "TYPE", "ROUTE", "AGE", "WORLD", "MODULE", "NODE-SELECTOR"] : ["NAME", "REVISION", "READY", "ROLLOUT", "TYPE", "ROUTE", "AGE"]);
            foreach (var item in items)
            {
                var spec = item["spec"] as JsonObject;
                var status = item["status"] as JsonObject;
                var digest = Str(spec?["module"]?["digest"]);
                string[] row = [Str(item["metadata"]?["name"]), Str(item["metadata"]?["generation"]),
                    status?["targetedNodes"] is null ? "-" : $"{Str(status["readyNodes"])}/{Str(status["targetedNodes"])}",
                    status?["rollout"]?["phase"] is { } phase ? Str(phase) : "-",
                    Outpost.Server.Api.KubeTable.ModuleKind(item),
                    Str(spec?["triggers"]?["http"]?["route"]), Age(item, now)];
                var world = Str(spec?["module"]?["world"]);
                rows.Add(wide ? [.. row, world.Length > 0 ? world : "-", digest.Length > 19 ? digest[..19] : digest, Selector(spec)] : row);
            }
        }

        return rows;
    }

    /// <summary>Rows (the first is the header) as space-aligned columns.</summary>
    public static string Columns(IReadOnlyList<string[]> rows)
    {
        ArgumentNullException.ThrowIfNull(rows);
        var widths = Widths(rows);
        var sb = new StringBuilder();
        foreach (var row in rows)
        {
            sb.AppendLine(Line(row, widths));
        }

        return sb.ToString();
    }

    /// <summary>Each column's width over <paramref name="rows"/>.</summary>
    public static int[] Widths(IReadOnlyList<string[]> rows) =>
        Enumerable.Range(0, rows[0].Length).Select(i => rows.Max(r => r[i].Length)).ToArray();

    /// <summary>One row padded to <paramref name="widths"/>; a longer cell pushes the rest of its row right.</summary>
    public static string Line(string[] row, int[] widths) =>
        string.Join("   ", row.Select((cell, i) => i == row.Length - 1 ? cell : cell.PadRight(widths[i]))).TrimEnd();

    /// <summary>
    /// One resource for people, as kubectl describe shows it: a node's state, host, usage, apps and
    /// sync in words (its raw status is `get node NAME -o yaml`), other kinds' spec and status, and
    /// last the events about it, oldest first.
    /// </summary>
    public static string Describe(JsonObject item, IReadOnlyList<JsonObject> events, DateTimeOffset now)
    {
        ArgumentNullException.ThrowIfNull(item);
        ArgumentNullException.ThrowIfNull(events);
        var metadata = item["metadata"] as JsonObject;
        var sb = new StringBuilder();
        Field(sb, "Name", Str(metadata?["name"]));
        Field(sb, "Kind", Str(item["kind"]));
        Field(sb, "Labels", Labels(item));
        Field(sb, "Created", $"{Str(metadata?["creationTimestamp"])} ({Age(item, now)} ago)");
        if ((string?)item["kind"] == ResourceKind.Node.Kind)
        {
            DescribeNode(sb, item["status"] as JsonObject ?? [], now);
        }
        else
        {
            // Derived kinds (services) have neither: they are not stored objects.
            if (metadata?["generation"] is not null)
            {
                Field(sb, (string?)item["kind"] == ResourceKind.Application.Kind ? "Revision" : "Generation", Str(metadata["generation"]));
            }

            if (metadata?["resourceVersion"] is not null)
            {
                Field(sb, "Resource version", Str(metadata["resourceVersion"]));
            }
            var spec = item["spec"] as JsonObject;
            if (spec is { Count: > 0 })
            {
                sb.AppendLine("Spec:");
                sb.Append(Indent(Yaml(spec)));
            }

            if (item["status"] is JsonObject { Count: > 0 } status)
            {
                sb.AppendLine("Status:");
                sb.Append(Indent(Yaml(status)));
            }
        }

        sb.AppendLine("Events:");
        if (events.Count == 0)
        {
            sb.AppendLine("  <none>");
        }
        else
        {
            var rows = new List<string[]> { (string[])["TIME", "TYPE", "REASON", "MESSAGE"] };
            rows.AddRange(events.Select(e => (string[])[Str(e["lastTimestamp"]), Str(e["type"]), Str(e["reason"]), Str(e["message"])]));
            sb.Append(Indent(Columns(rows)));
        }

        return sb.ToString();
    }

    private static void DescribeNode(StringBuilder sb, JsonObject status, DateTimeOffset now)
    {
        var ready = (status["conditions"] as JsonArray)?.OfType<JsonObject>().FirstOrDefault(c => (string?)c["type"] == "Ready");
        Field(sb, "State", ready?["message"] is { } why ? $"{Str(status["state"])} ({Str(why)})" : Str(status["state"]));
        Field(sb, "Last heartbeat", Since(status["lastHeartbeatTime"], now));
        Field(sb, "Agent version", Str(status["agentVersion"]));
        Field(sb, "Gateway", Str(status["gatewayUrl"]));
        Field(sb, "Applied revision", Str(status["appliedRevision"]));
        if (status["host"] is JsonObject host)
        {
            sb.AppendLine("System:");
            Field(sb, "  OS", $"{Str(host["osImage"])}, {Str(host["operatingSystem"])}/{Str(host["architecture"])}");
            Field(sb, "  Kernel", Str(host["kernelVersion"]));
            Field(sb, "  Hostname", Str(host["hostname"]));
            Field(sb, "  Internal IP", Str(host["internalIP"]));
            Field(sb, "  CPUs", Str(host["cpus"]));
            if (host["memoryBytes"] is JsonValue memory && memory.TryGetValue<long>(out var bytes))
            {
                Field(sb, "  Memory", Commands.MonitorCommands.Bytes(bytes));
            }
        }

        if (status["usage"] is JsonObject usage)
        {
            long Long(string name) => usage[name] is JsonValue v && v.TryGetValue<long>(out var l) ? l : 0;
            sb.AppendLine("Usage:");
            Field(sb, "  CPU", usage["cpuRatio"] is JsonValue cpu && cpu.TryGetValue<double>(out var ratio) ? Commands.MonitorCommands.Percent(ratio) : "-");
            Field(sb, "  Memory", $"{Commands.MonitorCommands.Bytes(Long("memoryUsedBytes"))} of {Commands.MonitorCommands.Bytes(Long("memoryTotalBytes"))}");
            Field(sb, "  Disk", $"{Commands.MonitorCommands.Bytes(Long("diskUsedBytes"))} of {Commands.MonitorCommands.Bytes(Long("diskTotalBytes"))} (data dir {Commands.MonitorCommands.Bytes(Long("dataDirBytes"))})");
            Field(sb, "  Agent memory", Commands.MonitorCommands.Bytes(Long("agentRssBytes")));
            Field(sb, "  Connections", Long("openConnections").ToString(CultureInfo.InvariantCulture));
        }

        if (status["outbox"] is JsonObject outbox)
        {
            Field(sb, "Outbox", $"{Str(outbox["pendingRecords"])} records ({Commands.MonitorCommands.Bytes((long?)outbox["pendingBytes"] ?? 0)}B) waiting to go up, "
                + $"{Str(outbox["droppedTotal"])} dropped; quota {Commands.MonitorCommands.Bytes((long?)outbox["quotaBytes"] ?? 0)}B, {Str(outbox["overflowPolicy"])} when full");
        }

        if (status["sync"] is JsonObject sync)
        {
            static (long Messages, long Bytes) Sum(JsonNode? side) =>
                side is JsonObject types
                    ? (types.Sum(t => (long?)t.Value?["messages"] ?? 0), types.Sum(t => (long?)t.Value?["bytes"] ?? 0))
                    : (0, 0);
            var (sentMessages, sentBytes) = Sum(sync["sent"]);
            var (receivedMessages, receivedBytes) = Sum(sync["received"]);
            Field(sb, "Sync", $"sent {Commands.MonitorCommands.Bytes(sentBytes)}B in {sentMessages} messages, received {Commands.MonitorCommands.Bytes(receivedBytes)}B in {receivedMessages} (since the server started)");
        }

        sb.AppendLine("Apps:");
        if (status["apps"] is JsonObject { Count: > 0 } apps)
        {
            var rows = new List<string[]> { (string[])["NAME", "REVISION", "STATE", "MESSAGE"] };
            rows.AddRange(apps.OrderBy(a => a.Key, StringComparer.Ordinal)
                .Select(a => (string[])[a.Key, Str(a.Value?["generation"]), Str(a.Value?["state"]), Str(a.Value?["message"])]));
            sb.Append(Indent(Columns(rows)));
        }
        else
        {
            sb.AppendLine("  <none>");
        }
    }

    private static void Field(StringBuilder sb, string name, string value) =>
        sb.Append(name).Append(':').Append(' ', Math.Max(1, 19 - name.Length)).AppendLine(value);

    private static string Since(JsonNode? timestamp, DateTimeOffset now) =>
        DateTimeOffset.TryParse(Str(timestamp), CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var at)
            ? $"{Str(timestamp)} ({Age(now - at)} ago)"
            : "never";

    private static string Indent(string text) =>
        string.Concat(text.Split('\n').Where(l => l.Length > 0).Select(l => "  " + l + "\n"));

    private static string Labels(JsonObject item) =>
        item["metadata"]?["labels"] is JsonObject { Count: > 0 } labels ? string.Join(",", labels.Select(p => $"{p.Key}={p.Value}")) : "<none>";

    private static string Selector(JsonObject? spec) =>
        spec?["placement"]?["nodeSelector"] is JsonObject { Count: > 0 } sel ? string.Join(",", sel.Select(p => $"{p.Key}={p.Value}")) : "<all nodes>";

    private static string Str(JsonNode? node) => node switch
    {
        null => "",
        JsonValue v when v.TryGetValue<string>(out var s) => s,
        _ => node.ToJsonString(),
    };

    /// <summary>Ages as kubectl prints them: 45s, 12m, 3h12m, 5d.</summary>
    public static string Age(JsonObject item, DateTimeOffset now)
    {
        if (!DateTimeOffset.TryParse(Str(item["metadata"]?["creationTimestamp"]), CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var created))
        {
            return "<unknown>";
        }

        return Age(now - created);
    }

    /// <summary>A span as kubectl prints ages.</summary>
    public static string Age(TimeSpan age)
    {
        if (age < TimeSpan.Zero)
        {
            age = TimeSpan.Zero;
        }

        return age.TotalSeconds < 120 ? $"{(int)age.TotalSeconds}s"
            : age.TotalMinutes < 10 ? $"{(int)age.TotalMinutes}m{age.Seconds}s"
            : age.TotalHours < 3 ? $"{(int)age.TotalMinutes}m"
            : age.TotalHours < 8 ? $"{(int)age.TotalHours}h{age.Minutes}m"
            : age.TotalDays < 2 ? $"{(int)age.TotalHours}h"
            : $"{(int)age.TotalDays}d";
    }
}
