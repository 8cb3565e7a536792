namespace Outpost.Core.Tokens;

/// <summary>The roles a bearer token grants.</summary>
public enum TokenKind
{
    /// <summary>Full API access.</summary>
    Admin,

    /// <summary>May only join a node.</summary>
    Join,

    /// <summary>One node's credential for sync and blob fetches.</summary>
    Node,
}

/// <summary>A token as stored: only a hash of its secret, never the secret itself.</summary>
public sealed record TokenRecord
{
    public required string Id { get; init; }

    public required TokenKind Kind { get; init; }

    public required string SecretHash { get; init; }

    /// <summary>For node tokens, the node's name.</summary>
    public string? Subject { get; init; }

    public required DateTimeOffset CreatedAt { get; init; }

    public DateTimeOffset? ExpiresAt { get; init; }

    public string? Description { get; init; }
}
