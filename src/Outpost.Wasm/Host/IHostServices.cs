namespace Outpost.Wasm.Host;

/// <summary>
/// What host functions reach on the node: its log, config, local buckets and outbox. The
/// agent implements it over its local store; each call names the app making it.
/// </summary>
public interface IHostServices
{
    void Log(string app, long revision, int level, string message);

    string? GetConfig(string app, string key);

    /// <summary>A value from the Secrets placed on this node, or null.</summary>
    string? GetSecret(string app, string key);

    byte[]? KvGet(string app, string bucket, string key);

    /// <summary>Writes a key; false when the bucket is not writable here (a cloud-to-edge bucket is read-only at the edge).</summary>
    bool KvSet(string app, string bucket, string key, ReadOnlySpan<byte> value);

    /// <summary>Deletes a key: 1 when it held a value, 0 when absent, -1 when the bucket is not writable here.</summary>
    int KvDelete(string app, string bucket, string key);

    /// <summary>Appends to the node's durable outbox; returns false when the outbox refused it (quota).</summary>
    bool Publish(string app, string topic, ReadOnlySpan<byte> payload);

    /// <summary>
    /// Sends an outbound HTTP request for the app (its http-out allow-list already checked) and
    /// waits at most <paramref name="timeout"/>; NAME.mesh goes to mesh service NAME. Throws
    /// <see cref="HttpOutException"/> when no response came, saying why.
    /// </summary>
    HttpOutResponse HttpRequest(string app, HttpOutRequest request, TimeSpan timeout);
}

/// <summary>An outbound HTTP request a guest makes (capability http-out).</summary>
public sealed record HttpOutRequest(string Method, Uri Url, IReadOnlyList<KeyValuePair<string, string>> Headers, byte[] Body)
{
    /// <summary>The largest response body taken; a longer one fails the request.</summary>
    public int MaxResponseBytes { get; init; } = 1024 * 1024;
}

/// <summary>What came back: status, headers (in order, names as sent) and body.</summary>
public sealed record HttpOutResponse(int Status, IReadOnlyList<KeyValuePair<string, string>> Headers, byte[] Body);

/// <summary>An outbound request that got no response: refused, unreachable, too slow or too large.</summary>
public sealed class HttpOutException(string message) : Exception(message);

/// <summary>The app identity and grants a run carries into host calls.</summary>
public sealed record HostGrant(string App, IReadOnlySet<string> Capabilities, IHostServices Services)
{
    /// <summary>The hosts http-out may reach (lowercase names; NAME.mesh for a mesh service).</summary>
    public IReadOnlySet<string> HttpOut { get; init; } = new HashSet<string>();

    /// <summary>The app revision the instance runs, for its log lines.</summary>
    public long Revision { get; init; }
}
