using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using System.Security.Cryptography;
using System.Text;
using Outpost.Core.Resources;
using Outpost.Core.Store;
using Outpost.Core.Sync;

namespace Outpost.Server.Sync;

/// <summary>
/// What one node should hold: the apps, config sets, secrets and buckets placed on it, each
/// Application at the revision its rollout assigns the node (the stable one until the node is
/// moved). Used to sync the node and to decide which modules it may download.
/// </summary>
public sealed class NodeDesiredState(IControlPlaneStore store)
{
    // Revisions are immutable once written; keyed by the app's uid, since a re-created app counts from 1 again.
    private readonly ConcurrentDictionary<(string Uid, long Revision), AppRevision> _revisions = new();

    private readonly Lock _lock = new();
    private (long AtLeast, Task<Placeable> Read)? _read;

    // What a node is sent of each resource, made once per resource read (keyed by the instance, so a
    // resource read again is rendered again), not once per node it is sent to.
    private readonly ConditionalWeakTable<StoredResource, string> _wire = new();

    /// <summary>Everything that may be placed on nodes, as of a store revision, and the rollouts.</summary>
    private sealed record Placeable(long Revision, IReadOnlyList<StoredResource> Items, IReadOnlyDictionary<string, Core.Rollouts.RolloutState> Rollouts)
    {
        /// <summary>
        /// Each app of <see cref="Items"/> at each revision a rollout assigns, as nodes are sent it: made
        /// once per read, and the same instance for every node, so its rendering is shared too.
        /// </summary>
        public ConcurrentDictionary<(string Uid, long ResourceVersion, long Generation), StoredResource> Assigned { get; } = new();
    }

    /// <summary>The JSON a node is sent for a resource of <see cref="ForNodeAsync"/> (not a Secret: that is opened for the node).</summary>
    public string WireJson(StoredResource resource) =>
        _wire.GetValue(resource, static r => ResourceJson.ToObject(r).ToJsonString());

    /// <summary>
    /// What may be placed, at least as new as <paramref name="atLeast"/>: one read of the store
    /// shared by every session that asks for the same revision or an older one, so one change
    /// sent to ten thousand nodes costs five list reads, not fifty thousand.
    /// </summary>
    private Task<Placeable> PlaceableAsync(long atLeast)
    {
        lock (_lock)
        {
            if (_read is var (asked, read) && !read.IsFaulted && !read.IsCanceled
                && (asked >= atLeast || (read.IsCompletedSuccessfully && read.Result.Revision >= atLeast)))
            {
                return read;
            }

            var next = ReadPlaceableAsync();
            _read = (atLeast, next);
            return next;
        }
    }

    private async Task<Placeable> ReadPlaceableAsync()
    {
        await Task.Yield(); // not under the caller's lock
        var ct = CancellationToken.None; // shared by many sessions: one leaving does not cancel it for the rest
        var revision = await store.GetRevisionAsync(ct); // first: every list below is at least this new
        var apps = await store.ListAsync(ResourceKind.Application.Kind, ct);
        var configSets = await store.ListAsync(ResourceKind.ConfigSet.Kind, ct);
        var buckets = await store.ListAsync(ResourceKind.Bucket.Kind, ct);
        var secrets = await store.ListAsync(ResourceKind.Secret.Kind, ct);
        var rollouts = await store.ListRolloutsAsync(ct);
        return new Placeable(revision, [.. apps.Items, .. configSets.Items, .. secrets.Items, .. buckets.Items], rollouts);
    }

    /// <summary>What <paramref name="node"/> should hold, from a read of the store at revision <paramref name="atLeast"/> or later.</summary>
    public async Task<IReadOnlyList<StoredResource>> ForNodeAsync(StoredResource node, long atLeast, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(node);
        var placeable = await PlaceableAsync(atLeast).WaitAsync(ct);
        var rollouts = placeable.Rollouts;
        // Container apps go only to nodes that said they can run them (runc, as root): a node without
        // is not a failed node of the app's rollout, it is not one of the app's nodes.
        // Likewise apps that run inference go only to nodes with ONNX Runtime.
        var runsContainers = NodeRunsContainers(node);
        var hasAi = NodeHasRuntime(node, AiRuntime);
        // (The spec is parsed only when its text mentions what might keep it off the node.)
        bool Surely(StoredResource r) => (runsContainers || !r.SpecJson.Contains("\"image\"", StringComparison.Ordinal))
            && (hasAi || (!r.SpecJson.Contains("\"models\"", StringComparison.Ordinal) && !r.SpecJson.Contains("\"nn\"", StringComparison.Ordinal)));
        var desired = DesiredStateDiff.ForNode(placeable.Items, node.Labels)
            .Where(r => r.Kind != ResourceKind.Application.Kind || Surely(r) || NotPlacedBecause(ApplicationSpec.FromJson(r.Spec()), node) is null)
            .ToList();
        for (var i = 0; i < desired.Count; i++)
        {
            var app = desired[i];
            if (app.Kind != ResourceKind.Application.Kind)
            {
                continue;
            }

            var assigned = rollouts.TryGetValue(app.Name, out var rollout) ? rollout.RevisionFor(node.Name) : app.Generation;
            var key = (app.Uid, app.ResourceVersion, assigned);
            if (placeable.Assigned.TryGetValue(key, out var made))
            {
                desired[i] = made;
                continue;
            }

            if (assigned != app.Generation)
            {
                if (!_revisions.TryGetValue((app.Uid, assigned), out var revision))
                {
                    revision = await store.GetAppRevisionAsync(app.Name, assigned, ct);
                    if (revision is null)
                    {
                        // Not kept (pruning keeps every revision a rollout uses): the current one is all there is.
                        desired[i] = placeable.Assigned.GetOrAdd(key, app);
                        continue;
                    }

                    _revisions[(app.Uid, assigned)] = revision;
                }

                app = app with { SpecJson = revision.SpecJson, Generation = assigned };
            }

            desired[i] = placeable.Assigned.GetOrAdd(key, app with { ResourceVersion = VersionOf(app) });
        }

        return desired;
    }

    /// <summary>The runtime a node lists when its Wasm apps can run inference (WASI-NN on ONNX Runtime).</summary>
    public const string AiRuntime = "onnx";

    /// <summary>
    /// True when the app is placed on the node: its selector matches, and the node runs its kind of
    /// app (containers need runc; apps that run inference need ONNX Runtime).
    /// </summary>
    public static bool Places(ApplicationSpec app, StoredResource node) => NotPlacedBecause(app, node) is null && app.Targets(node.Labels);

    /// <summary>
    /// Why a node the app's selector matches cannot run it (it lacks the app's runtime), or null
    /// when it can (or the selector does not match it: that is no reason worth showing).
    /// </summary>
    public static string? NotPlacedBecause(ApplicationSpec app, StoredResource node)
    {
        ArgumentNullException.ThrowIfNull(app);
        ArgumentNullException.ThrowIfNull(node);
        if (!app.Targets(node.Labels))
        {
            return null;
        }

        // Asked for every node and app by placement, readiness and rollouts: the node's status is
        // scanned for what is asked, and parsed whole only to say why an app cannot go there.
        if (app.IsContainer && !NodeHasRuntime(node, "runc"))
        {
            return $"runs no containers: {StatusText(node, "containerRuntimeProblem") ?? "it has not said it can"}";
        }

        if (app.NeedsAi && !NodeHasRuntime(node, AiRuntime))
        {
            return $"has no ONNX Runtime for inference (ai: unavailable): {StatusText(node, "aiProblem") ?? "it has not said it has one"}";
        }

        return null;
    }

    /// <summary>True when the node's last hello listed the runc runtime.</summary>
    public static bool NodeRunsContainers(StoredResource node) => NodeHasRuntime(node, "runc");

    /// <summary>
    /// True when the node's last hello listed <paramref name="runtime"/> (its status's top-level
    /// <c>runtimes</c> array): read with a forward-only reader, not a parse of the whole status,
    /// since it is asked of every node each time a change is sent or an app's readiness counted.
    /// </summary>
    public static bool NodeHasRuntime(StoredResource node, string runtime)
    {
        ArgumentNullException.ThrowIfNull(node);
        ArgumentNullException.ThrowIfNull(runtime);
        if (node.StatusJson is not { } status || !status.Contains(runtime, StringComparison.Ordinal))
        {
            return false;
        }

        var bytes = System.Buffers.ArrayPool<byte>.Shared.Rent(Encoding.UTF8.GetMaxByteCount(status.Length));
        try
        {
            var reader = new System.Text.Json.Utf8JsonReader(bytes.AsSpan(0, Encoding.UTF8.GetBytes(status, bytes)));
            if (!reader.Read() || reader.TokenType != System.Text.Json.JsonTokenType.StartObject)
            {
                return false;
            }

            while (reader.Read() && reader.TokenType == System.Text.Json.JsonTokenType.PropertyName)
            {
                var runtimes = reader.ValueTextEquals("runtimes"u8);
                reader.Read();
                if (!runtimes || reader.TokenType != System.Text.Json.JsonTokenType.StartArray)
                {
                    reader.Skip();
                    continue;
                }

                while (reader.Read() && reader.TokenType != System.Text.Json.JsonTokenType.EndArray)
                {
                    if (reader.TokenType == System.Text.Json.JsonTokenType.String && reader.ValueTextEquals(runtime))
                    {
                        return true;
                    }

                    reader.Skip();
                }

                return false;
            }

            return false;
        }
        catch (System.Text.Json.JsonException)
        {
            return false; // a status that is not JSON lists nothing
        }
        finally
        {
            System.Buffers.ArrayPool<byte>.Shared.Return(bytes);
        }
    }

    /// <summary>
    /// What placement reads of a node: all of it but its status, and of that only the runtimes its
    /// last hello listed. A session keeps this between changes rather than the node it read: the
    /// status is a kilobyte and more (host, usage, apps), kept once for every connected node.
    /// Reasons given by <see cref="NotPlacedBecause"/> need the whole status; asking whether an
    /// app is placed does not.
    /// </summary>
    public static StoredResource PlacementView(StoredResource node)
    {
        ArgumentNullException.ThrowIfNull(node);
        string? runtimes = null;
        try
        {
            if (node.StatusJson is { } json && System.Text.Json.Nodes.JsonNode.Parse(json)?["runtimes"] is System.Text.Json.Nodes.JsonArray listed)
            {
                runtimes = new System.Text.Json.Nodes.JsonObject { ["runtimes"] = listed.DeepClone() }.ToJsonString();
            }
        }
        catch (System.Text.Json.JsonException)
        {
            // a status that is not JSON lists nothing
        }

        // Nodes mostly list the same runtimes: one string for a run of them.
        var last = Volatile.Read(ref _lastRuntimes);
        if (runtimes is not null && runtimes != last)
        {
            Volatile.Write(ref _lastRuntimes, runtimes);
        }

        return node with { StatusJson = runtimes == last ? last : runtimes };
    }

    private static string? _lastRuntimes;

    /// <summary>A string field of the node's status, or null.</summary>
    private static string? StatusText(StoredResource node, string field) =>
        node.StatusJson is { } json && System.Text.Json.Nodes.JsonNode.Parse(json)?[field] is System.Text.Json.Nodes.JsonValue value
            && value.GetValueKind() == System.Text.Json.JsonValueKind.String ? value.GetValue<string>() : null;

    /// <summary>
    /// The version a node holds an app at: fixed by what it is sent (the app's uid, the revision
    /// and its metadata; a revision's spec never changes), so a node is sent an app again only
    /// when that changes, not when a new revision it does not run yet is written. Negative, so
    /// it is never mistaken for a store revision.
    /// </summary>
    private static long VersionOf(StoredResource app)
    {
        var identity = FormattableString.Invariant($"{app.Uid}/{app.Generation}/")
            + System.Text.Json.JsonSerializer.Serialize(app.Labels, Core.Resources.CoreJson.Default.IReadOnlyDictionaryStringString) + "/" + System.Text.Json.JsonSerializer.Serialize(app.Annotations, Core.Resources.CoreJson.Default.IReadOnlyDictionaryStringString);
        Span<byte> hash = stackalloc byte[32];
        SHA256.HashData(Encoding.UTF8.GetBytes(identity), hash);
        return -(long)(System.Buffers.Binary.BinaryPrimitives.ReadUInt64BigEndian(hash) >> 1) - 1;
    }
}
