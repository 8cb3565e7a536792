using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging;
using Outpost.Agent.State;
using Outpost.Core.Resources;
using Outpost.Wasm.Host;

namespace Outpost.Agent.Host;

/// <summary>
/// Host functions on this node: config from the ConfigSets that target it, buckets and the
/// outbox in the local data store, and the agent's log.
/// </summary>
public sealed partial class AgentHostServices(LocalDataStore data, Core.Security.SecretBox secretBox, Monitoring.LogRing logs, IServiceProvider services, ILogger<AgentHostServices> logger) : IHostServices
{
    private volatile Dictionary<string, string> _config = [];
    private volatile Dictionary<string, string> _secrets = [];
    private volatile Dictionary<string, BucketSpec> _buckets = [];

    /// <summary>Event raised after a record is appended, for local topic triggers.</summary>
    public event Action<string, string, byte[]>? Published;

    /// <summary>
    /// Replaces the node's config from its ConfigSets. Where two sets define a key, the one
    /// first by name wins, so the result never depends on arrival order.
    /// </summary>
    public void UpdateConfig(IEnumerable<(string Name, string Json)> configSets)
    {
        ArgumentNullException.ThrowIfNull(configSets);
        var merged = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var (_, json) in configSets.OrderBy(c => c.Name, StringComparer.Ordinal))
        {
            foreach (var (key, value) in ResourceJson.ReadMap(JsonNode.Parse(json)?["spec"]?["data"]))
            {
                merged.TryAdd(key, value);
            }
        }

        _config = merged;
    }

    /// <summary>
    /// Replaces the node's secrets from the Secrets placed on it, kept sealed at rest with this
    /// node's own key and opened here, in memory only. Where two define a key, the first by name wins.
    /// </summary>
    public void UpdateSecrets(IEnumerable<(string Name, string Json)> secrets)
    {
        ArgumentNullException.ThrowIfNull(secrets);
        var merged = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var (name, json) in secrets.OrderBy(c => c.Name, StringComparer.Ordinal))
        {
            foreach (var (key, value) in ResourceJson.ReadMap(JsonNode.Parse(json)?["spec"]?["data"]))
            {
                if (!merged.ContainsKey(key))
                {
                    merged[key] = secretBox.Open(value, Core.Security.SecretBox.ContextOf(name, key));
                }
            }
        }

        _secrets = merged;
    }

    public string? GetSecret(string app, string key) => _secrets.TryGetValue(key, out var value) ? value : null;

    /// <summary>Replaces the buckets declared for this node (from its desired state).</summary>
    public void UpdateBuckets(IEnumerable<(string Name, string Json)> buckets)
    {
        ArgumentNullException.ThrowIfNull(buckets);
        _buckets = buckets.ToDictionary(b => b.Name, b => BucketSpec.FromJson(JsonNode.Parse(b.Json)?["spec"]), StringComparer.Ordinal);
    }

    /// <summary>
    /// How a bucket behaves on this node: the Bucket resource of that name, or an edge-local,
    /// last-writer-wins bucket when none is declared.
    /// </summary>
    public BucketSpec BucketOf(string bucket) => _buckets.TryGetValue(bucket, out var spec) ? spec : new BucketSpec();

    /// <summary>The declared buckets this node holds.</summary>
    public IReadOnlyDictionary<string, BucketSpec> Buckets => _buckets;

    public void Log(string app, long revision, int level, string message)
    {
        var logLevel = level switch
        {
            <= 0 => LogLevel.Debug,
            1 => LogLevel.Information,
            2 => LogLevel.Warning,
            _ => LogLevel.Error,
        };
        logs.Write(Monitoring.RingLoggerProvider.LevelName(logLevel), app, revision, message);
        LogApp(logger, logLevel, app, message);
    }

    public string? GetConfig(string app, string key) => _config.TryGetValue(key, out var value) ? value : null;

    public byte[]? KvGet(string app, string bucket, string key) => data.KvGet(bucket, key);

    public bool KvSet(string app, string bucket, string key, ReadOnlySpan<byte> value)
    {
        var spec = BucketOf(bucket);
        if (!spec.EdgeWritable || (spec.SyncsUp && BucketSpec.KeyOrValueProblem(key, value.Length) is not null))
        {
            return false; // read-only here, or too big to sync
        }

        data.KvSet(bucket, key, value, shipUp: spec.SyncsUp);
        return true;
    }

    public int KvDelete(string app, string bucket, string key)
    {
        var spec = BucketOf(bucket);
        if (!spec.EdgeWritable)
        {
            return -1;
        }

        return data.KvDelete(bucket, key, shipUp: spec.SyncsUp) ? 1 : 0;
    }

    public bool Publish(string app, string topic, ReadOnlySpan<byte> payload)
    {
        var bytes = payload.ToArray();
        if (data.Append(topic, app, bytes) < 0)
        {
            return false; // refused by the outbox's overflow policy, and counted
        }

        Published?.Invoke(topic, app, bytes);
        return true;
    }

    /// <summary>Outbound HTTP for a guest: it runs synchronously on its pool thread, which waits here (long waits raise the pool's floor: Apps/GuestThreads.cs).</summary>
    public HttpOutResponse HttpRequest(string app, HttpOutRequest request, TimeSpan timeout) =>
        // Resolved when first used: the mesh client needs the app registry, which needs this.
        (services.GetService(typeof(Mesh.HttpOutClient)) as Mesh.HttpOutClient ?? throw new HttpOutException("outbound HTTP is not available on this node"))
            .SendAsync(request, timeout).GetAwaiter().GetResult();

    [LoggerMessage(Message = "app {App}: {Message}")]
    private static partial void LogApp(ILogger logger, LogLevel level, string app, string message);
}
