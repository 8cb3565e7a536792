namespace Outpost.Core.Store;

/// <summary>A record as a node shipped it: its per-node sequence makes ingest idempotent.</summary>
public sealed record IngestRecord(long Sequence, string Topic, string Source, byte[] Payload, DateTimeOffset CreatedAt);

/// <summary>A stored record, with the server-wide cursor consumers page by.</summary>
public sealed record StoredRecord(long Cursor, string Node, long Sequence, string Topic, string Source, byte[] Payload, DateTimeOffset CreatedAt, DateTimeOffset IngestedAt);

/// <summary>
/// An immutable revision of an Application: its spec (module digest included) as of one generation,
/// and how its rollout ended (Succeeded, RolledBack, Failed, Superseded; empty while in progress).
/// </summary>
public sealed record AppRevision(string App, long Revision, string Digest, string SpecJson, DateTimeOffset CreatedAt, string Outcome = "");

/// <summary>One API mutation (or refused attempt): who, what, when, and how it ended.</summary>
public sealed record AuditEntry(long Id, DateTimeOffset At, string Actor, string Role, string Verb, string Path, int Status, string? Detail);

/// <summary>Something that happened to an object (a node going NotReady, say): Type is Normal or Warning, Reason a CamelCase word.</summary>
public sealed record EventRecord(long Id, DateTimeOffset At, string Kind, string Name, string Type, string Reason, string Message);

public sealed record IngestResult(int Stored, int Duplicates);

public sealed record TopicSummary(string Topic, long Records, long Bytes, int Nodes, DateTimeOffset LastIngestedAt);

/// <summary>One log line a node shipped: Id is the server's arrival order, Sequence the node's own (per stream).</summary>
public sealed record LogRecord(long Id, string Node, string Stream, long Sequence, DateTimeOffset At, string Level, string App, long Revision, string Message);

/// <summary>
/// Which log lines to list. With <see cref="AfterId"/>, the lines that arrived after it, in arrival
/// order (following); without, the newest <see cref="Limit"/> matching lines, in time order.
/// </summary>
public sealed record LogQuery(string? App = null, string? Node = null, DateTimeOffset? Since = null, long? AfterId = null, int Limit = 1000, bool AgentOnly = false);

/// <summary>
/// One alert: a rule's condition on one target ("node/edge-1", "app/hello"). State is Pending
/// (holding, waiting out the rule's `for`), Firing, or Resolved (held, then stopped).
/// </summary>
public sealed record AlertRecord(
    string Rule,
    string Target,
    string State,
    double Value,
    string Message,
    DateTimeOffset ActiveSince,
    DateTimeOffset? FiredAt,
    DateTimeOffset? ResolvedAt);
