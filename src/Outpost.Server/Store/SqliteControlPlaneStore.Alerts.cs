using Outpost.Core.Store;

namespace Outpost.Server.Store;

/// <summary>The state of the alerts the rules raised.</summary>
public sealed partial class SqliteControlPlaneStore
{
    public async Task<IReadOnlyList<AlertRecord>> ListAlertsAsync(CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync(cancellationToken);
        await using var command = Command(connection, null, "SELECT rule, target, state, value, message, active_ms, fired_ms, resolved_ms FROM alerts ORDER BY rule, target");
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

    public Task SaveAlertAsync(AlertRecord alert, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(alert);
        return ExecuteLockedAsync("""
            INSERT OR REPLACE INTO alerts (rule, target, state, value, message, active_ms, fired_ms, resolved_ms)
            VALUES ($rule, $target, $state, $value, $message, $active, $fired, $resolved)
            """, cancellationToken,
            ("$rule", alert.Rule), ("$target", alert.Target), ("$state", alert.State), ("$value", alert.Value), ("$message", alert.Message),
            ("$active", alert.ActiveSince.ToUnixTimeMilliseconds()), ("$fired", alert.FiredAt?.ToUnixTimeMilliseconds()), ("$resolved", alert.ResolvedAt?.ToUnixTimeMilliseconds()));
    }

    public Task DeleteAlertAsync(string rule, string target, CancellationToken cancellationToken) =>
        ExecuteLockedAsync("DELETE FROM alerts WHERE rule = $rule AND target = $target", cancellationToken, ("$rule", rule), ("$target", target));
}
