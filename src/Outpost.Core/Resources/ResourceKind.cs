namespace Outpost.Core.Resources;

/// <summary>A kind the API serves, with the names Kubernetes conventions give it.</summary>
public sealed record ResourceKind(string Kind, string Plural, string Group, string Version)
{
    /// <summary>Kinds whose fields sit at the top level, not under spec (a RuntimeClass has `handler`).</summary>
    public bool SpecAtTop { get; init; }

    public string ApiVersion => Group.Length == 0 ? Version : $"{Group}/{Version}";

    public string ListKind => Kind + "List";

    /// <summary>The collection path: core kinds live under /api, the others under /apis/group.</summary>
    public string CollectionPath => Group.Length == 0 ? $"/api/{Version}/{Plural}" : $"/apis/{Group}/{Version}/{Plural}";

    public static readonly ResourceKind Node = new("Node", "nodes", "", "v1");

    public static readonly ResourceKind Application = new("Application", "applications", "outpost.dev", "v1");

    public static readonly ResourceKind ConfigSet = new("ConfigSet", "configsets", "outpost.dev", "v1");

    public static readonly ResourceKind Bucket = new("Bucket", "buckets", "outpost.dev", "v1");

    public static readonly ResourceKind Secret = new("Secret", "secrets", "outpost.dev", "v1");

    /// <summary>Kubernetes' RuntimeClass: its handler names the runtime an Application's spec.runtimeClassName selects.</summary>
    public static readonly ResourceKind RuntimeClass = new("RuntimeClass", "runtimeclasses", "node.k8s.io", "v1") { SpecAtTop = true };

    /// <summary>A condition over node, app or sync metrics that notifies a webhook when it holds (evaluated on the server).</summary>
    public static readonly ResourceKind AlertRule = new("AlertRule", "alertrules", "outpost.dev", "v1");

    /// <summary>Read-only: the alerts the rules raised, pending, firing or lately resolved.</summary>
    public static readonly ResourceKind Alert = new("Alert", "alerts", "outpost.dev", "v1");

    /// <summary>Read-only: one per topic the fleet has published to, with counts.</summary>
    public static readonly ResourceKind Topic = new("Topic", "topics", "outpost.dev", "v1");

    /// <summary>Read-only: the audit log of API mutations.</summary>
    public static readonly ResourceKind AuditEvent = new("AuditEvent", "audit", "outpost.dev", "v1");

    /// <summary>Read-only: what happened to nodes (Ready, NotReady, Offline transitions), newest last.</summary>
    public static readonly ResourceKind Event = new("Event", "events", "", "v1");

    /// <summary>
    /// A network service: applied as a resource (spec.selector picks the apps whose Ready instances
    /// are its endpoints; port, ingress, clients), or implied by apps' spec.expose, the shorthand.
    /// Read back with its endpoints (and each one's health) under status.
    /// </summary>
    public static readonly ResourceKind NetworkService = new("NetworkService", "networkservices", "outpost.dev", "v1");

    /// <summary>Kinds kept in the resource store (topics are derived from ingested records).</summary>
    public static IReadOnlyList<ResourceKind> All { get; } = [Node, Application, ConfigSet, Secret, Bucket, AlertRule, RuntimeClass, NetworkService];

    /// <summary>Kinds a user may create with apply; nodes are created by joining.</summary>
    public static IReadOnlyList<ResourceKind> Applicable { get; } = [Application, ConfigSet, Secret, Bucket, AlertRule, RuntimeClass, NetworkService];

    /// <summary>Kinds that are delivered to the nodes their placement selects.</summary>
    public static IReadOnlyList<ResourceKind> Targeted { get; } = [Application, ConfigSet, Secret, Bucket];

    public static ResourceKind? FindByKind(string kind) => All.FirstOrDefault(k => k.Kind == kind);

    public static ResourceKind? FindByPlural(string plural) =>
        All.FirstOrDefault(k => string.Equals(k.Plural, plural, StringComparison.OrdinalIgnoreCase));

    /// <summary>What a user may type after `get`, one name per kind, in the order help lists them.</summary>
    public static IReadOnlyList<string> UserNames { get; } =
        ["nodes", "apps", "configsets", "secrets", "buckets", "alertrules", "runtimeclasses", "alerts", "events", "topics", "services", "audit"];

    /// <summary>The user name closest to a mistyped one (two edits at most, or a prefix), for "did you mean".</summary>
    public static string? Suggest(string typed)
    {
        ArgumentNullException.ThrowIfNull(typed);
        var lower = typed.ToLowerInvariant();
        return UserNames.Where(n => n.StartsWith(lower, StringComparison.Ordinal) && lower.Length >= 2)
            .Concat(UserNames.Where(n => Distance(n, lower) <= 2).OrderBy(n => Distance(n, lower)))
            .FirstOrDefault();
    }

    private static int Distance(string a, string b)
    {
        var previous = Enumerable.Range(0, b.Length + 1).ToArray();
        for (var i = 1; i <= a.Length; i++)
        {
            var current = new int[b.Length + 1];
            current[0] = i;
            for (var j = 1; j <= b.Length; j++)
            {
                current[j] = Math.Min(Math.Min(current[j - 1] + 1, previous[j] + 1), previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1));
            }

            previous = current;
        }

        return previous[b.Length];
    }

    /// <summary>Resolves what a user types after `get`: plural, singular or kind name.</summary>
    public static ResourceKind? FindByUserName(string name)
    {
        var lower = name.ToLowerInvariant();
        return lower switch
        {
            "node" or "nodes" or "no" => Node,
            "app" or "apps" or "application" or "applications" => Application,
            "cs" or "configset" or "configsets" => ConfigSet,
            "secret" or "secrets" => Secret,
            "topic" or "topics" => Topic,
            "bucket" or "buckets" => Bucket,
            "audit" or "auditevents" => AuditEvent,
            "event" or "events" or "ev" => Event,
            "alertrule" or "alertrules" => AlertRule,
            "runtimeclass" or "runtimeclasses" => RuntimeClass,
            "alert" or "alerts" => Alert,
            "service" or "services" or "svc" or "networkservice" or "networkservices" => NetworkService,
            _ => null,
        };
    }
}
