namespace Outpost.Core.Api;

/// <summary>A node's state as derived from its heartbeat lease.</summary>
public static class NodeState
{
    public const string Ready = "Ready";
    public const string NotReady = "NotReady";
    public const string Offline = "Offline";

    /// <summary>
    /// Ready while its stream is open and the lease is fresh; NotReady when the lease has
    /// lapsed (missed beats) with the stream still open, or the stream dropped within the
    /// lease; Offline once the lease has expired and the stream is gone.
    /// </summary>
    public static string Derive(bool connected, DateTimeOffset? lastHeartbeat, DateTimeOffset now, TimeSpan lease)
    {
        if (lastHeartbeat is null)
        {
            return Offline;
        }

        var fresh = now - lastHeartbeat.Value <= lease;
        return connected && fresh ? Ready : connected || fresh ? NotReady : Offline;
    }
}
