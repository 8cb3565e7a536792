using Npgsql;
using Outpost.Core.Store;
using Outpost.Core.Tokens;

namespace Outpost.Server.Store;

/// <summary>
/// Tokens, read from the database on every ask: a replica that cached them would honour a token
/// another replica had deleted or used up.
/// </summary>
public sealed partial class PostgresControlPlaneStore
{
    private const string TokenColumns = "id, kind, secret_hash, subject, created_at, expires_at, description, role, max_uses, uses, labels";

    public async Task CreateTokenAsync(TokenRecord token, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(token);
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken);
        try
        {
            await ExecuteAsync(connection, """
                INSERT INTO tokens (id, kind, secret_hash, subject, created_at, expires_at, description, role, max_uses, uses, labels)
                VALUES (@id, @kind, @hash, @subject, @created, @expires, @description, @role, @maxUses, 0, @labels)
                """, cancellationToken,
                ("id", token.Id), ("kind", (int)token.Kind), ("hash", token.SecretHash), ("subject", token.Subject),
                ("created", token.CreatedAt.ToUniversalTime()), ("expires", token.ExpiresAt?.ToUniversalTime()), ("description", token.Description),
                ("role", token.Role), ("maxUses", token.MaxUses), ("labels", Serialize(token.Labels)));
        }
        catch (PostgresException ex) when (ex.SqlState == PostgresErrorCodes.UniqueViolation)
        {
            throw new StoreException(StoreError.AlreadyExists, "Token", token.Id, $"token {token.Id} already exists");
        }
    }

    public async Task<TokenRecord?> GetTokenAsync(string id, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(id);
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken);
        await using var command = Command(connection, $"SELECT {TokenColumns} FROM tokens WHERE id = @id", ("id", id));
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        return await reader.ReadAsync(cancellationToken) ? ReadToken(reader) : null;
    }

    public async Task<IReadOnlyList<TokenRecord>> ListTokensAsync(CancellationToken cancellationToken)
    {
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken);
        await using var command = Command(connection, $"SELECT {TokenColumns} FROM tokens ORDER BY created_at, id");
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        var tokens = new List<TokenRecord>();
        while (await reader.ReadAsync(cancellationToken))
        {
            tokens.Add(ReadToken(reader));
        }

        return tokens;
    }

    /// <summary>One statement: the row lock makes a concurrent use from another replica wait and see this one's count.</summary>
    public async Task<bool> TryUseTokenAsync(string id, CancellationToken cancellationToken)
    {
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken);
        return await ExecuteAsync(connection, "UPDATE tokens SET uses = uses + 1 WHERE id = @id AND (max_uses IS NULL OR uses < max_uses)",
            cancellationToken, ("id", id)) == 1;
    }

    public async Task<bool> DeleteTokenAsync(string id, CancellationToken cancellationToken)
    {
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken);
        return await ExecuteAsync(connection, "DELETE FROM tokens WHERE id = @id", cancellationToken, ("id", id)) > 0;
    }

    private static TokenRecord ReadToken(NpgsqlDataReader reader) => new()
    {
        Id = reader.GetString(0),
        Kind = (TokenKind)reader.GetInt32(1),
        SecretHash = reader.GetString(2),
        Subject = reader.IsDBNull(3) ? null : reader.GetString(3),
        CreatedAt = reader.GetFieldValue<DateTimeOffset>(4),
        ExpiresAt = reader.IsDBNull(5) ? null : reader.GetFieldValue<DateTimeOffset>(5),
        Description = reader.IsDBNull(6) ? null : reader.GetString(6),
        Role = reader.IsDBNull(7) ? ((TokenKind)reader.GetInt32(1) == TokenKind.Api ? Roles.Admin : null) : reader.GetString(7),
        MaxUses = reader.IsDBNull(8) ? null : reader.GetInt32(8),
        Uses = reader.GetInt32(9),
        Labels = Deserialize(reader.GetString(10)),
    };
}
