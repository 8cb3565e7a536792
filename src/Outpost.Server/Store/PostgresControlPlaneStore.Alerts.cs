using Outpost.Core.Store;

namespace Outpost.Server.Store;

/// <summary>The state of the alerts the rules raised.</summary>
public sealed partial class PostgresControlPlaneStore
{
    public async Task<IReadOnlyList<AlertRecord>> ListAlertsAsync(CancellationToken cancellationToken)
    {
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken);
        await using var command = Command(connection, "SELECT rule, target, state, value, message, active_ms, fired_ms, resolved_ms FROM alerts ORDER BY rule, target");
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        var alerts = new List<AlertRecord>();
        while (await reader.ReadAsync(cancellationToken))
        {
            alerts.Add(new AlertRecord(reader.GetString(0), reader.GetString(1), reader.GetString(2), reader.GetDouble(3), reader.GetString(4),
                DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(5)),
                reader.IsDBNull(6) ? null : DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(6)),
                reader.IsDBNull(7) ? null : DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(7))));
        }

        return alerts;
    }

    public async Task SaveAlertAsync(AlertRecord alert, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(alert);
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken);
        await ExecuteAsync(connection, """
            INSERT INTO alerts (rule, target, state, value, message, active_ms, fired_ms, resolved_ms)
            VALUES (@rule, @target, @state, @value, @message, @active, @fired, @resolved)
            ON CONFLICT (rule, target) DO UPDATE SET state = excluded.state, value = excluded.value, message = excluded.message,
              active_ms = excluded.active_ms, fired_ms = excluded.fired_ms, resolved_ms = excluded.resolved_ms
            """, cancellationToken,
            ("rule", alert.Rule), ("target", alert.Target), ("state", alert.State), ("value", alert.Value), ("message", alert.Message),
            ("active", alert.ActiveSince.ToUnixTimeMilliseconds()), ("fired", alert.FiredAt?.ToUnixTimeMilliseconds()), ("resolved", alert.ResolvedAt?.ToUnixTimeMilliseconds()));
    }

    public async Task DeleteAlertAsync(string rule, string target, CancellationToken cancellationToken)
    {
        await using var connection = await _dataSource.OpenConnectionAsync(cancellationToken);
        await ExecuteAsync(connection, "DELETE FROM alerts WHERE rule = @rule AND target = @target", cancellationToken, ("rule", rule), ("target", target));
    }
}
