using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using Outpost.Core.Resources;
using YamlDotNet.Serialization;

namespace Outpost.Client;

/// <summary>Renders API objects as tables (kubectl-like), JSON or YAML.</summary>
internal static class Output
{
    public static string Json(JsonNode node) => node.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true });

    public static string Yaml(JsonNode? node) =>
        new SerializerBuilder().WithQuotingNecessaryStrings().Build().Serialize(ToPlain(node));

    private static object? ToPlain(JsonNode? node) => node switch
    {
        JsonObject obj => obj.ToDictionary(p => p.Key, p => ToPlain(p.Value)),
        JsonArray arr => arr.Select(ToPlain).ToList(),
        JsonValue v when v.TryGetValue<string>(out var s) => s,
        JsonValue v when v.TryGetValue<bool>(out var b) => b,
        JsonValue v when v.TryGetValue<long>(out var l) => l,
        JsonValue v when v.TryGetValue<double>(out var d) => d,
        null => null,
        _ => node.ToJsonString(),
    };

    public static string Table(ResourceKind kind, IEnumerable<JsonObject> items, bool wide, DateTimeOffset now)
    {
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
            rows.Add(wide ? ["NAME", "GENERATION", "ROUTE", "MODULE", "AGE", "NODE-SELECTOR"] : ["NAME", "GENERATION", "ROUTE", "MODULE", "AGE"]);
            foreach (var item in items)
            {
                var spec = item["spec"] as JsonObject;
                var digest = Str(spec?["module"]?["digest"]);
                string[] row = [Str(item["metadata"]?["name"]), Str(item["metadata"]?["generation"]),
                    Str(spec?["triggers"]?["http"]?["route"]), digest.Length > 19 ? digest[..19] : digest, Age(item, now)];
                rows.Add(wide ? [.. row, Selector(spec)] : row);
            }
        }

        return rows.Count == 1 ? $"No {kind.Plural} found.\n" : Columns(rows);
    }

    /// <summary>Rows (the first is the header) as space-aligned columns.</summary>
    public static string Columns(IReadOnlyList<string[]> rows)
    {
        ArgumentNullException.ThrowIfNull(rows);
        var widths = Enumerable.Range(0, rows[0].Length).Select(i => rows.Max(r => r[i].Length)).ToArray();
        var sb = new StringBuilder();
        foreach (var row in rows)
        {
            sb.AppendLine(string.Join("   ", row.Select((cell, i) => i == row.Length - 1 ? cell : cell.PadRight(widths[i]))).TrimEnd());
        }

        return sb.ToString();
    }

    public static string Describe(JsonObject item, DateTimeOffset now)
    {
        var metadata = item["metadata"] as JsonObject;
        var sb = new StringBuilder();
        sb.AppendLine(CultureInfo.InvariantCulture, $"Name:              {Str(metadata?["name"])}");
        sb.AppendLine(CultureInfo.InvariantCulture, $"Kind:              {Str(item["kind"])}");
        sb.AppendLine(CultureInfo.InvariantCulture, $"Labels:            {Labels(item)}");
        sb.AppendLine(CultureInfo.InvariantCulture, $"UID:               {Str(metadata?["uid"])}");
        sb.AppendLine(CultureInfo.InvariantCulture, $"Created:           {Str(metadata?["creationTimestamp"])} ({Age(item, now)} ago)");
        sb.AppendLine(CultureInfo.InvariantCulture, $"Generation:        {Str(metadata?["generation"])}");
        sb.AppendLine(CultureInfo.InvariantCulture, $"Resource version:  {Str(metadata?["resourceVersion"])}");
        if (item["spec"] is JsonObject { Count: > 0 } spec)
        {
            sb.AppendLine("Spec:");
            sb.Append(Indent(Yaml(spec)));
        }

        if (item["status"] is JsonObject { Count: > 0 } status)
        {
            sb.AppendLine("Status:");
            sb.Append(Indent(Yaml(status)));
        }

        return sb.ToString();
    }

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

        var age = now - created;
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
