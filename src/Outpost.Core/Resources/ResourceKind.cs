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

    /// <summary>Kinds kept in the resource store (topics are derived from ingested records).</summary>
    public static IReadOnlyList<ResourceKind> All { get; } = [Node, Application, ConfigSet, Secret, Bucket, AlertRule, RuntimeClass];

    /// <summary>Kinds a user may create with apply; nodes are created by joining.</summary>
    public static IReadOnlyList<ResourceKind> Applicable { get; } = [Application, ConfigSet, Secret, Bucket, AlertRule, RuntimeClass];

    /// <summary>Kinds that are delivered to the nodes their placement selects.</summary>
    public static IReadOnlyList<ResourceKind> Targeted { get; } = [Application, ConfigSet, Secret, Bucket];

    public static ResourceKind? FindByKind(string kind) => All.FirstOrDefault(k => k.Kind == kind);

    public static ResourceKind? FindByPlural(string plural) =>
        All.FirstOrDefault(k => string.Equals(k.Plural, plural, StringComparison.OrdinalIgnoreCase));

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
            _ => null,
        };
    }
}
