namespace Outpost.Core.Tokens;

/// <summary>The roles a bearer token grants.</summary>
public enum TokenKind
{
    /// <summary>The REST API, with a role: admin or viewer.</summary>
    Api,

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

    /// <summary>For API tokens: <see cref="Roles.Admin"/> or <see cref="Roles.Viewer"/>.</summary>
    public string? Role { get; init; }

    /// <summary>For join tokens: how many joins it allows (null: no limit).</summary>
    public int? MaxUses { get; init; }

    /// <summary>How many times it was used to join.</summary>
    public int Uses { get; init; }

    /// <summary>For join tokens: labels every node joining with it gets (they override what the node asks for).</summary>
    public IReadOnlyDictionary<string, string> Labels { get; init; } = new Dictionary<string, string>();
}

/// <summary>API roles: admins may change anything, viewers may only read.</summary>
public static class Roles
{
    public const string Admin = "admin";
    public const string Viewer = "viewer";

    public static readonly IReadOnlyList<string> All = [Admin, Viewer];
}
