namespace Outpost.Core.Api;

/// <summary>A node's state as derived from its heartbeat lease.</summary>
public static class NodeState
{
    public const string Ready = "Ready";
    public const string NotReady = "NotReady";
    public const string Offline = "Offline";

    /// <summary>
    /// Ready while its stream is up and the lease is fresh; NotReady when the lease has
    /// lapsed or the stream dropped recently; Offline once it has been gone for four leases.
    /// </summary>
    public static string Derive(bool connected, DateTimeOffset? lastHeartbeat, DateTimeOffset now, TimeSpan lease)
    {
        if (lastHeartbeat is null)
        {
            return Offline;
        }

        var age = now - lastHeartbeat.Value;
        if (connected && age <= lease)
        {
            return Ready;
        }

        return age <= lease * 4 ? NotReady : Offline;
    }
}
