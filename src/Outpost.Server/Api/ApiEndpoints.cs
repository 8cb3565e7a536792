using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Outpost.Core.Api;
using Outpost.Core.Resources;
using Outpost.Core.Selectors;
using Outpost.Core.Store;
using Outpost.Core.Tokens;
using Outpost.Server.Hosting;
using Outpost.Server.Sync;
using Outpost.Wasm.Hosting;

namespace Outpost.Server.Api;

/// <summary>
/// The REST API, shaped by Kubernetes conventions: list objects, Status errors, merge patch,
/// label selectors. The `outpost` client uses exactly these endpoints.
/// </summary>
public static class ApiEndpoints
{
    public const string OutpostPrefix = "/apis/outpost.dev/v1";

    /// <summary>Largest module accepted by push, 64 MiB.</summary>
    public const int MaxBlobBytes = 64 * 1024 * 1024;

    public static void MapOutpostApi(this IEndpointRouteBuilder app)
    {
        app.MapGet("/healthz", () => Results.Text("ok"));
        // Public: agents fetch it before joining and check it against the fingerprint their join token pins.
        app.MapGet("/cacerts", (Security.ServerTls tls) => tls.Authority is null
            ? Error(new ApiStatus(404, StatusReasons.NotFound, "this server runs with --insecure-http and has no CA"))
            : Results.Text(tls.Authority.Trust.Pem, "application/x-pem-file"));
        app.MapGet("/version", () => Json(new JsonObject
        {
            ["major"] = "1",
            ["minor"] = "32",
            ["gitVersion"] = $"v1.32.0-outpost.{ServerInfo.Version}",
            ["outpostVersion"] = ServerInfo.Version,
            ["platform"] = $"{Environment.OSVersion.Platform.ToString().ToLowerInvariant()}/{System.Runtime.InteropServices.RuntimeInformation.OSArchitecture.ToString().ToLowerInvariant()}",
        }));

        MapKind(app, ResourceKind.Node, writable: false);
        MapKind(app, ResourceKind.Application, writable: true);
        MapKind(app, ResourceKind.ConfigSet, writable: true);
        MapKind(app, ResourceKind.Secret, writable: true);
        MapKind(app, ResourceKind.Bucket, writable: true);
        MapKind(app, ResourceKind.AlertRule, writable: true);
        MapKind(app, ResourceKind.RuntimeClass, writable: true);

        app.MapGet($"{OutpostPrefix}/networkservices", async (HttpContext context, Mesh.MeshRegistry registry, Mesh.ServiceTraffic traffic, IControlPlaneStore store, ResourceView view, TimeProvider time, CancellationToken ct) =>
        {
            var revision = await store.GetRevisionAsync(ct);
            var items = new List<JsonObject>();
            foreach (var service in await registry.ListAsync(ct))
            {
                items.Add(await ServiceJsonAsync(service, traffic, store, view, ct));
            }

            return KubeTable.Wanted(context.Request.Headers.Accept)
                ? Results.Text(KubeTable.Build(ResourceKind.NetworkService, items, revision, time.GetUtcNow()).ToJsonString(), KubeTable.ContentType)
                : Json(ResourceJson.ToList(ResourceKind.NetworkService, revision, items));
        });
        app.MapGet(OutpostPrefix + "/networkservices/{name}", async (string name, HttpContext context, Mesh.MeshRegistry registry, Mesh.ServiceTraffic traffic, IControlPlaneStore store, ResourceView view, TimeProvider time, CancellationToken ct) =>
            await registry.GetAsync(name, ct) is { } service
                ? KubeTable.Wanted(context.Request.Headers.Accept)
                    ? Results.Text(KubeTable.Build(ResourceKind.NetworkService, [await ServiceJsonAsync(service, traffic, store, view, ct)], await store.GetRevisionAsync(ct), time.GetUtcNow()).ToJsonString(), KubeTable.ContentType)
                    : Json(await ServiceJsonAsync(service, traffic, store, view, ct))
                : Error(new ApiStatus(404, StatusReasons.NotFound, $"networkservices.outpost.dev \"{name}\" not found: no NetworkService declares it and no app exposes it (spec.expose.service)", Kind: ResourceKind.NetworkService.Kind, Name: name)));
        // A NetworkService is written as any stored kind; read back above, with its endpoints.
        var services = ResourceKind.NetworkService.CollectionPath;
        app.MapPost(services, (HttpContext ctx, IServiceProvider sp, CancellationToken ct) => WriteAsync(ctx, ResourceKind.NetworkService, null, WriteOp.Create, sp, ct));
        app.MapPut(services + "/{name}", (string name, HttpContext ctx, IServiceProvider sp, CancellationToken ct) => WriteAsync(ctx, ResourceKind.NetworkService, name, WriteOp.Replace, sp, ct));
        app.MapPatch(services + "/{name}", (string name, HttpContext ctx, IServiceProvider sp, CancellationToken ct) => PatchAsync(ctx, ResourceKind.NetworkService, name, sp, ct));
        app.MapDelete(services + "/{name}", (string name, IControlPlaneStore store, NodeLeases leases, Monitoring.MetricsRecorder metrics, CancellationToken ct) =>
            DeleteAsync(ResourceKind.NetworkService, name, store, leases, metrics, ct));
        // The cloud gateway: any method, through the node's own connection (Mesh/MeshProxy.cs).
        app.Map("/proxy/nodes/{node}/{**path}", (string node, string? path, HttpContext context, Mesh.MeshProxy proxy) => proxy.ToNodeAsync(context, node, path ?? ""));
        app.MapPost("/proxy/exec/{node}/{app}", (string node, string app, HttpContext context, Mesh.MeshProxy proxy) => proxy.ExecAsync(context, node, app));
        app.Map("/proxy/services/{name}/{**path}", (string name, string? path, HttpContext context, Mesh.MeshProxy proxy) => proxy.ToServiceAsync(context, name, path ?? ""));
        // `outpost port-forward`: a port on the node's loopback, or a service's endpoint.
        app.MapPost("/proxy/tunnel/nodes/{node}/{port:int:range(1,65535)}", async (string node, int port, HttpContext context, Mesh.MeshProxy proxy, IControlPlaneStore store) =>
        {
            if (await store.GetAsync(ResourceKind.Node.Kind, node, context.RequestAborted) is null)
            {
                await Error(ApiStatus.NotFound(ResourceKind.Node.Kind, node)).ExecuteAsync(context);
                return;
            }

            await proxy.TunnelAsync(context, node, string.Create(CultureInfo.InvariantCulture, $"tcp/{port}"), $"port {port} of node {node}");
        });
        app.MapPost("/proxy/tunnel/services/{name}", async (string name, HttpContext context, Mesh.MeshProxy proxy) =>
        {
            if (await proxy.PickEndpointAsync(context, name) is { } endpoint)
            {
                await proxy.TunnelAsync(context, endpoint.Node, "app/" + endpoint.App, $"service {name}: app {endpoint.App} on node {endpoint.Node}");
            }
        });
        app.MapGet($"{OutpostPrefix}/topics", ListTopicsAsync);
        app.MapGet(OutpostPrefix + "/topics/{topic}", GetTopicAsync);
        app.MapGet(OutpostPrefix + "/topics/{topic}/records", ReadRecordsAsync);
        app.MapPost($"{OutpostPrefix}/apply", ApplyAsync);
        app.MapPost($"{OutpostPrefix}/blobs", PushBlobAsync);
        app.MapGet(OutpostPrefix + "/blobs/{digest}", GetBlobAsync);
        app.MapTokens();
        app.MapRollouts();
        app.MapGet(ResourceKind.AuditEvent.CollectionPath, ListAuditAsync);
        app.MapGet(ResourceKind.Event.CollectionPath, ListEventsAsync);
        app.MapBucketData();
        app.MapMetrics();
        app.MapLogs();
        app.MapKubeDiscovery();
        app.MapKubeNodeViews();
        app.MapKubeOpenApi();
        app.MapSelfSubjectReview();
    }

    /// <summary>
    /// A service as the API shows it: its endpoints and what was relayed for it under status; for one
    /// a NetworkService declares, the stored object's metadata and spec (selector, port, ...) too.
    /// </summary>
    private static async Task<JsonObject> ServiceJsonAsync(Mesh.MeshService service, Mesh.ServiceTraffic traffic, IControlPlaneStore store, ResourceView view, CancellationToken ct)
    {
        var json = Mesh.MeshRegistry.ToJson(service, traffic);
        if (service.Declared && await store.GetAsync(ResourceKind.NetworkService.Kind, service.Name, ct) is { } stored)
        {
            var rendered = view.Render(stored);
            json["metadata"] = rendered["metadata"]?.DeepClone();
            var spec = (JsonObject)json["spec"]!;
            foreach (var (field, value) in rendered["spec"] as JsonObject ?? [])
            {
                spec[field] = value?.DeepClone();
            }
        }

        return json;
    }

    private static void MapKind(IEndpointRouteBuilder app, ResourceKind kind, bool writable)
    {
        var collection = kind.CollectionPath;
        app.MapGet(collection, (HttpContext ctx, IControlPlaneStore store, ResourceView view, CancellationToken ct) => ListAsync(ctx, kind, store, view, ct));
        app.MapGet(collection + "/{name}", (string name, HttpContext ctx, IControlPlaneStore store, ResourceView view, CancellationToken ct) => GetAsync(ctx, kind, name, store, view, ct));
        app.MapDelete(collection + "/{name}", (string name, IControlPlaneStore store, NodeLeases leases, Monitoring.MetricsRecorder metrics, CancellationToken ct) =>
            DeleteAsync(kind, name, store, leases, metrics, ct));
        if (!writable)
        {
            return;
        }

        app.MapPost(collection, (HttpContext ctx, IServiceProvider sp, CancellationToken ct) => WriteAsync(ctx, kind, null, WriteOp.Create, sp, ct));
        app.MapPut(collection + "/{name}", (string name, HttpContext ctx, IServiceProvider sp, CancellationToken ct) => WriteAsync(ctx, kind, name, WriteOp.Replace, sp, ct));
        app.MapPatch(collection + "/{name}", (string name, HttpContext ctx, IServiceProvider sp, CancellationToken ct) => PatchAsync(ctx, kind, name, sp, ct));
    }

    private static async Task<IResult> ListAsync(HttpContext context, ResourceKind kind, IControlPlaneStore store, ResourceView view, CancellationToken cancellationToken)
    {
        LabelSelector selector;
        try
        {
            selector = LabelSelector.Parse(context.Request.Query["labelSelector"]);
        }
        catch (FormatException ex)
        {
            return Error(ApiStatus.BadRequest($"invalid labelSelector: {ex.Message}"));
        }

        if (!TryReveal(context, out var reveal, out var forbidden))
        {
            return forbidden;
        }

        var time = context.RequestServices.GetRequiredService<TimeProvider>();
        if (context.Request.Query["watch"] is var watch && (watch == "true" || watch == "1"))
        {
            await KubeWatch.RunAsync(context, kind, selector, store, view, time,
                async (objects, revision) => JsonNode.Parse(await RenderTableAsync(kind, objects, revision, store, view, time, cancellationToken))!.AsObject(), cancellationToken);
            return Results.Empty;
        }

        var page = await store.ListAsync(kind.Kind, cancellationToken);
        List<JsonObject> items = [.. page.Items.Where(i => selector.Matches(i.Labels)).Select(i => view.Render(i, reveal))];
        if (KubeTable.Wanted(context.Request.Headers.Accept))
        {
            return await TableAsync(kind, items, page.Revision, store, view, context.RequestServices.GetRequiredService<TimeProvider>(), cancellationToken);
        }

        await AddReadinessAsync(kind, items, store, view, cancellationToken);
        return Json(ResourceJson.ToList(kind, page.Revision, items));
    }

    /// <summary>kubectl's server-side printing; an app's READY counts its targeted nodes serving its revision Ready.</summary>
    private static async Task<IResult> TableAsync(ResourceKind kind, List<JsonObject> items, long revision, IControlPlaneStore store, ResourceView view, TimeProvider time, CancellationToken ct) =>
        Results.Text(await RenderTableAsync(kind, items, revision, store, view, time, ct), KubeTable.ContentType);

    /// <summary>
    /// The Table of <paramref name="items"/>, after <see cref="AddReadinessAsync"/> wrote each
    /// app's readiness into it: a watch sends those same objects to JSON clients.
    /// </summary>
    private static async Task<string> RenderTableAsync(ResourceKind kind, List<JsonObject> items, long revision, IControlPlaneStore store, ResourceView view, TimeProvider time, CancellationToken ct)
    {
        await AddReadinessAsync(kind, items, store, view, ct);
        Func<JsonObject, string>? ready = kind == ResourceKind.Application ? app => $"{app["status"]?["readyNodes"]}/{app["status"]?["targetedNodes"]}" : null;
        return KubeTable.Build(kind, items, revision, time.GetUtcNow(), ready).ToJsonString();
    }

    /// <summary>
    /// Writes into each app its <c>status.targetedNodes</c> (the nodes its placement selects) and
    /// <c>status.readyNodes</c> (those of them Ready and serving its current revision Ready), as a
    /// Deployment carries replicas and readyReplicas: READY in `get apps`, for the CLI and kubectl.
    /// </summary>
    private static async Task AddReadinessAsync(ResourceKind kind, List<JsonObject> items, IControlPlaneStore store, ResourceView view, CancellationToken ct)
    {
        if (kind != ResourceKind.Application || items.Count == 0)
        {
            return;
        }

        // Every node's state and app states, each status read once (not rendered whole): a fleet
        // of thousands is counted at every `get apps` and every watch's look.
        var nodes = (await store.ListAsync(ResourceKind.Node.Kind, ct)).Items.Select(n =>
        {
            var (beat, apps) = NodeStatusReader.Read(n.StatusJson);
            return (Node: n, Ready: view.NodeStateOf(n.Name, beat) == NodeState.Ready, Apps: apps);
        }).ToList();
        foreach (var app in items)
        {
            var name = (string)app["metadata"]!["name"]!;
            var generation = (long?)app["metadata"]?["generation"] ?? 0;
            var spec = ApplicationSpec.FromJson(app["spec"] as JsonObject ?? []);
            var targeted = nodes.Where(n => Sync.NodeDesiredState.Places(spec, n.Node)).ToList();
            var serving = targeted.Count(n => n.Ready && n.Apps.TryGetValue(name, out var running) && running.State == "Ready" && running.Generation == generation);
            if (app["status"] is not JsonObject status)
            {
                app["status"] = status = [];
            }

            status["targetedNodes"] = targeted.Count;
            status["readyNodes"] = serving;
            // Nodes the app's selector picks that cannot run it, and why (no runc, no ONNX Runtime).
            var notPlaced = nodes.Select(n => (n.Node.Name, Reason: Sync.NodeDesiredState.NotPlacedBecause(spec, n.Node))).Where(n => n.Reason is not null).ToList();
            status["notPlaced"] = notPlaced.Count == 0 ? null
                : new JsonArray([.. notPlaced.Select(n => (JsonNode)new JsonObject { ["node"] = n.Name, ["reason"] = $"node {n.Name} {n.Reason}" })]);
        }
    }

    private static async Task<IResult> GetAsync(HttpContext context, ResourceKind kind, string name, IControlPlaneStore store, ResourceView view, CancellationToken cancellationToken)
    {
        if (!TryReveal(context, out var reveal, out var forbidden))
        {
            return forbidden;
        }

        var resource = await store.GetAsync(kind.Kind, name, cancellationToken);
        if (resource is null)
        {
            return Error(ApiStatus.NotFound(kind.Kind, name));
        }

        var rendered = view.Render(resource, reveal);
        if (KubeTable.Wanted(context.Request.Headers.Accept))
        {
            return await TableAsync(kind, [rendered], resource.ResourceVersion, store, view, context.RequestServices.GetRequiredService<TimeProvider>(), cancellationToken);
        }

        await AddReadinessAsync(kind, [rendered], store, view, cancellationToken);
        return Json(rendered);
    }

    /// <summary>?reveal=true shows secret values, to admins only.</summary>
    private static bool TryReveal(HttpContext context, out bool reveal, out IResult forbidden)
    {
        reveal = context.Request.Query["reveal"] == "true";
        forbidden = null!;
        if (reveal && context.Items[OutpostServer.RoleKey] as string != Core.Tokens.Roles.Admin)
        {
            forbidden = Error(new ApiStatus(403, StatusReasons.Forbidden, "Forbidden: only an admin token may reveal secret values"));
            return false;
        }

        return true;
    }

    private static async Task<IResult> DeleteAsync(ResourceKind kind, string name, IControlPlaneStore store, NodeLeases leases, Monitoring.MetricsRecorder metrics, CancellationToken cancellationToken)
    {
        try
        {
            var result = (await store.WriteAsync([new ResourceWrite { Op = WriteOp.Delete, Kind = kind.Kind, Name = name }], cancellationToken))[0];
            if (kind == ResourceKind.Node)
            {
                leases.Forget(name);
                metrics.Forget(name);
            }

            return Json(new JsonObject
            {
                ["kind"] = "Status",
                ["apiVersion"] = "v1",
                ["metadata"] = new JsonObject(),
                ["status"] = "Success",
                ["details"] = new JsonObject { ["name"] = name, ["kind"] = kind.Plural, ["uid"] = result.Resource.Uid },
            });
        }
        catch (StoreException ex)
        {
            return Error(ResourceWriter.ToStatus(ex));
        }
    }

    private static async Task<IResult> WriteAsync(HttpContext context, ResourceKind kind, string? urlName, WriteOp op, IServiceProvider services, CancellationToken cancellationToken)
    {
        var (body, error) = await ReadObjectAsync(context, cancellationToken);
        if (body is null)
        {
            return Error(error!);
        }

        if ((body["kind"] as JsonValue)?.ToString() is { } bodyKind && bodyKind != kind.Kind)
        {
            return Error(ApiStatus.BadRequest($"this endpoint serves {kind.Kind}, not {bodyKind}"));
        }

        var bodyName = ((body["metadata"] as JsonObject)?["name"] as JsonValue)?.ToString();
        if (urlName is not null && bodyName is not null && bodyName != urlName)
        {
            return Error(ApiStatus.BadRequest($"metadata.name '{bodyName}' does not match the name in the URL '{urlName}'"));
        }

        return await CommitAsync(services, body, op, cancellationToken);
    }

    private static async Task<IResult> PatchAsync(HttpContext context, ResourceKind kind, string name, IServiceProvider services, CancellationToken cancellationToken)
    {
        var contentType = context.Request.ContentType ?? "";
        var apply = contentType.StartsWith("application/apply-patch+yaml", StringComparison.OrdinalIgnoreCase);
        if (!apply && !contentType.StartsWith("application/merge-patch+json", StringComparison.OrdinalIgnoreCase))
        {
            return Error(new ApiStatus(415, StatusReasons.UnsupportedMediaType,
                $"unsupported patch type '{contentType}': use application/merge-patch+json, or application/apply-patch+yaml (server-side apply)"));
        }

        var (patch, error) = apply ? await ReadApplyAsync(context, kind, name, cancellationToken) : await ReadObjectAsync(context, cancellationToken);
        if (patch is null)
        {
            return Error(error!);
        }

        var store = services.GetRequiredService<IControlPlaneStore>();
        var existing = await store.GetAsync(kind.Kind, name, cancellationToken);
        if (apply)
        {
            // Server-side apply: this manager's configuration is the patch, less the fields it set last time and dropped now.
            var manager = context.Request.Query["fieldManager"].ToString() is { Length: > 0 } m ? m : "unknown";
            patch = ServerSideApply.Patch(existing is null ? null : ResourceJson.ToObject(existing), patch, manager);
            if (existing is null)
            {
                return await CommitAsync(services, patch, WriteOp.Create, cancellationToken);
            }
        }
        else if (existing is null)
        {
            return Error(ApiStatus.NotFound(kind.Kind, name));
        }

        var current = ResourceJson.ToObject(existing);
        current.Remove("status");
        var merged = (JsonObject)MergePatch.Apply(current, patch)!;
        if (((merged["metadata"] as JsonObject)?["name"] as JsonValue)?.ToString() != name)
        {
            return Error(ApiStatus.BadRequest("a patch cannot change metadata.name"));
        }

        // Server-managed fields are not the user's to set.
        if (merged["metadata"] is JsonObject metadata)
        {
            metadata.Remove("uid");
            metadata.Remove("generation");
            metadata.Remove("creationTimestamp");
            if (patch["metadata"]?["resourceVersion"] is null)
            {
                metadata.Remove("resourceVersion");
            }
        }

        return await CommitAsync(services, merged, WriteOp.Replace, cancellationToken);
    }

    /// <summary>A server-side apply body: one YAML (or JSON) object of this kind and name.</summary>
    private static async Task<(JsonObject? Body, ApiStatus? Error)> ReadApplyAsync(HttpContext context, ResourceKind kind, string name, CancellationToken cancellationToken)
    {
        using var reader = new StreamReader(context.Request.Body);
        var text = await reader.ReadToEndAsync(cancellationToken);
        IReadOnlyList<Core.Manifests.ManifestDocument> docs;
        try
        {
            docs = Core.Manifests.YamlManifestReader.Read(text, "the apply patch");
        }
        catch (Core.Manifests.ManifestException ex)
        {
            return (null, ApiStatus.BadRequest(ex.Message));
        }

        if (docs.Count != 1)
        {
            return (null, ApiStatus.BadRequest($"an apply patch is one object; got {docs.Count}"));
        }

        var body = docs[0].Body;
        if ((string?)body["kind"] != kind.Kind || (string?)body["metadata"]?["name"] != name)
        {
            return (null, ApiStatus.BadRequest($"the apply patch must be the {kind.Kind} named '{name}' (got {(string?)body["kind"]} '{(string?)body["metadata"]?["name"]}')"));
        }

        return (body, null);
    }

    private static async Task<IResult> CommitAsync(IServiceProvider services, JsonObject body, WriteOp op, CancellationToken cancellationToken)
    {
        var writer = services.GetRequiredService<ResourceWriter>();
        var (write, invalid) = await writer.PrepareAsync(body, op, null, cancellationToken);
        if (write is null)
        {
            return Error(invalid!);
        }

        try
        {
            var result = (await services.GetRequiredService<IControlPlaneStore>().WriteAsync([write], cancellationToken))[0];
            var rendered = services.GetRequiredService<ResourceView>().Render(result.Resource);
            return Json(rendered, result.Outcome == WriteOutcome.Created ? 201 : 200);
        }
        catch (StoreException ex)
        {
            return Error(ResourceWriter.ToStatus(ex));
        }
    }

    /// <summary>
    /// Applies a list of objects in one transaction: every object is validated first, and a
    /// single problem anywhere means nothing is written. <c>?dryRun=All</c> validates only.
    /// </summary>
    private static async Task<IResult> ApplyAsync(HttpContext context, IServiceProvider services, CancellationToken cancellationToken)
    {
        var (body, error) = await ReadObjectAsync(context, cancellationToken);
        if (body is null)
        {
            return Error(error!);
        }

        if (body["items"] is not JsonArray items)
        {
            return Error(ApiStatus.BadRequest("expected a List object with 'items'"));
        }

        var writer = services.GetRequiredService<ResourceWriter>();
        var writes = new List<ResourceWrite>();
        var causes = new List<StatusCause>();
        var names = new HashSet<string>(StringComparer.Ordinal);
        var batchRuntimeClasses = items.OfType<JsonObject>().Where(i => (string?)(i["kind"] as JsonValue)?.ToString() == ResourceKind.RuntimeClass.Kind)
            .Select(i => (i["metadata"]?["name"] as JsonValue)?.ToString()).OfType<string>().ToHashSet(StringComparer.Ordinal);
        for (var i = 0; i < items.Count; i++)
        {
            var label = (items[i] as JsonObject)?["metadata"]?["name"] is JsonValue n ? $"items[{i}] ({n})" : $"items[{i}]";
            if (items[i] is not JsonObject item)
            {
                causes.Add(new StatusCause($"items[{i}]", "expected an object"));
                continue;
            }

            var (write, invalid) = await writer.PrepareAsync(item, WriteOp.Upsert, null, cancellationToken, batchRuntimeClasses, [.. items.OfType<JsonObject>()]);
            if (write is null)
            {
                causes.AddRange(invalid!.Causes?.Select(c => c with { Field = $"{label}.{c.Field}" }) ?? [new StatusCause(label, invalid.Message)]);
                continue;
            }

            if (!names.Add($"{write.Kind}/{write.Name}"))
            {
                causes.Add(new StatusCause($"{label}.metadata.name", $"{write.Kind} \"{write.Name}\" appears more than once in this apply"));
                continue;
            }

            writes.Add(write);
        }

        if (causes.Count > 0)
        {
            return Error(ApiStatus.Invalid("List", null, causes, "nothing was applied"));
        }

        var dryRun = context.Request.Query["dryRun"] == "All";
        IReadOnlyList<WriteResult> results;
        if (dryRun)
        {
            results = [];
        }
        else
        {
            try
            {
                results = await services.GetRequiredService<IControlPlaneStore>().WriteAsync(writes, cancellationToken);
            }
            catch (StoreException ex)
            {
                return Error(ResourceWriter.ToStatus(ex));
            }
        }

        context.Items[Hosting.OutpostServer.AuditDetailKey] = dryRun
            ? $"dry run of {writes.Count} resource(s)"
            : string.Join(", ", results.Select(r => $"{r.Resource.Kind}/{r.Resource.Name} {r.Outcome.ToString().ToLowerInvariant()}"));
        var view = services.GetRequiredService<ResourceView>();
        return Json(new JsonObject
        {
            ["kind"] = "List",
            ["apiVersion"] = "v1",
            ["dryRun"] = dryRun,
            ["items"] = new JsonArray([.. results.Select(r => (JsonNode)new JsonObject
            {
                ["outcome"] = r.Outcome.ToString().ToLowerInvariant(),
                ["object"] = view.Render(r.Resource),
            })]),
        });
    }

    private static JsonObject TopicObject(TopicSummary topic) => new()
    {
        ["apiVersion"] = ResourceKind.Topic.ApiVersion,
        ["kind"] = ResourceKind.Topic.Kind,
        ["metadata"] = new JsonObject { ["name"] = topic.Topic },
        ["status"] = new JsonObject
        {
            ["records"] = topic.Records,
            ["bytes"] = topic.Bytes,
            ["nodes"] = topic.Nodes,
            ["lastIngestTime"] = ResourceJson.FormatTimestamp(topic.LastIngestedAt),
        },
    };

    private static async Task<IResult> ListTopicsAsync(IControlPlaneStore store, CancellationToken cancellationToken)
    {
        var topics = await store.ListTopicsAsync(cancellationToken);
        return Json(ResourceJson.ToList(ResourceKind.Topic, await store.GetRevisionAsync(cancellationToken), topics.Select(TopicObject)));
    }

    private static async Task<IResult> GetTopicAsync(string topic, IControlPlaneStore store, CancellationToken cancellationToken)
    {
        var found = (await store.ListTopicsAsync(cancellationToken)).FirstOrDefault(t => t.Topic == topic);
        return found is null ? Error(ApiStatus.NotFound("Topic", topic)) : Json(TopicObject(found));
    }

    /// <summary>
    /// Ingested records of a topic in a stable order, paged by cursor: pass the previous
    /// page's metadata.continue as ?after= to get the next. Per node, cursor order is the
    /// order the node published in.
    /// </summary>
    private static async Task<IResult> ReadRecordsAsync(string topic, HttpContext context, IControlPlaneStore store, CancellationToken cancellationToken)
    {
        var query = context.Request.Query;
        long after = 0;
        if (query.TryGetValue("after", out var afterText) && (!long.TryParse(afterText, NumberStyles.None, CultureInfo.InvariantCulture, out after)))
        {
            return Error(ApiStatus.BadRequest($"after='{afterText}' is not a cursor: use a non-negative integer (metadata.continue of the previous page)"));
        }

        var limit = 500;
        if (query.TryGetValue("limit", out var limitText) && (!int.TryParse(limitText, NumberStyles.None, CultureInfo.InvariantCulture, out limit) || limit is < 1 or > 10_000))
        {
            return Error(ApiStatus.BadRequest($"limit='{limitText}' must be an integer from 1 to 10000"));
        }

        string? node = query.TryGetValue("node", out var nodeText) ? nodeText.ToString() : null;
        var records = await store.ReadRecordsAsync(topic, after, limit, node, cancellationToken);
        var items = new JsonArray();
        foreach (var record in records)
        {
            var item = new JsonObject
            {
                ["cursor"] = record.Cursor.ToString(CultureInfo.InvariantCulture),
                ["node"] = record.Node,
                ["sequence"] = record.Sequence,
                ["topic"] = record.Topic,
                ["source"] = record.Source,
                ["createdAt"] = record.CreatedAt.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture),
                ["ingestedAt"] = record.IngestedAt.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture),
                ["payload"] = Convert.ToBase64String(record.Payload),
            };
            if (TryUtf8(record.Payload, out var text))
            {
                item["text"] = text;
            }

            items.Add((JsonNode)item);
        }

        return Json(new JsonObject
        {
            ["kind"] = "RecordList",
            ["apiVersion"] = ResourceKind.Topic.ApiVersion,
            ["metadata"] = new JsonObject { ["continue"] = (records.Count > 0 ? records[^1].Cursor : after).ToString(CultureInfo.InvariantCulture) },
            ["items"] = items,
        });
    }

    /// <summary>
    /// Events, oldest first, paged by id (?continue=); ?fieldSelector=involvedObject.name=NODE
    /// keeps one object's.
    /// </summary>
    private static async Task<IResult> ListEventsAsync(HttpContext context, IControlPlaneStore store, CancellationToken cancellationToken)
    {
        var text = context.Request.Query["continue"].ToString();
        var after = 0L;
        if (text.Length > 0 && !long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out after))
        {
            return Error(ApiStatus.BadRequest($"continue='{text}' is not an event cursor (metadata.continue of the previous page)"));
        }

        string? name = null;
        string? uid = null;
        foreach (var term in context.Request.Query["fieldSelector"].ToString().Split(',', StringSplitOptions.RemoveEmptyEntries))
        {
            var (field, value) = term.Split('=', 2) is [var f, var v] ? (f.TrimEnd('='), v) : (term, "");
            if (field is "involvedObject.name")
            {
                name = value;
            }
            else if (field is "involvedObject.uid")
            {
                uid = value;
            }
            else if (field is not ("involvedObject.kind" or "involvedObject.namespace"))
            {
                return Error(ApiStatus.BadRequest($"fieldSelector '{term}' is not supported on events; use involvedObject.name=NAME"));
            }
        }

        // Events name their object, not its uid, as a kubelet's do (uid = the node's name):
        // kubectl describe asks both ways and merges, so only that form matches.
        var events = uid is { Length: > 0 } && uid != name ? [] : await store.ListEventsAsync(after, 1000, name, cancellationToken);
        return Json(new JsonObject
        {
            ["kind"] = ResourceKind.Event.ListKind,
            ["apiVersion"] = ResourceKind.Event.ApiVersion,
            ["metadata"] = new JsonObject { ["continue"] = events.Count < 1000 ? "" : events[^1].Id.ToString(CultureInfo.InvariantCulture) },
            ["items"] = new JsonArray([.. events.Select(e => (JsonNode)new JsonObject
            {
                ["kind"] = ResourceKind.Event.Kind,
                ["apiVersion"] = ResourceKind.Event.ApiVersion,
                ["metadata"] = new JsonObject { ["name"] = $"{e.Name}.{e.Id.ToString(CultureInfo.InvariantCulture)}", ["creationTimestamp"] = ResourceJson.FormatTimestamp(e.At) },
                ["involvedObject"] = new JsonObject { ["kind"] = e.Kind, ["name"] = e.Name, ["uid"] = e.Name },
                ["source"] = new JsonObject { ["component"] = "outpost-server" },
                ["type"] = e.Type,
                ["reason"] = e.Reason,
                ["message"] = e.Message,
                ["count"] = 1,
                ["firstTimestamp"] = ResourceJson.FormatTimestamp(e.At),
                ["lastTimestamp"] = ResourceJson.FormatTimestamp(e.At),
            })]),
        });
    }

    /// <summary>The audit log, oldest first, paged by id (?continue=).</summary>
    private static async Task<IResult> ListAuditAsync(HttpContext context, IControlPlaneStore store, CancellationToken cancellationToken)
    {
        var text = context.Request.Query["continue"].ToString();
        var after = 0L;
        if (text.Length > 0 && !long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out after))
        {
            return Error(ApiStatus.BadRequest($"continue='{text}' is not an audit cursor (metadata.continue of the previous page)"));
        }

        var entries = await store.ListAuditAsync(after, 1000, cancellationToken);
        return Json(new JsonObject
        {
            ["kind"] = ResourceKind.AuditEvent.ListKind,
            ["apiVersion"] = ResourceKind.AuditEvent.ApiVersion,
            ["metadata"] = new JsonObject { ["continue"] = entries.Count < 1000 ? "" : entries[^1].Id.ToString(CultureInfo.InvariantCulture) },
            ["items"] = new JsonArray([.. entries.Select(e => (JsonNode)new JsonObject
            {
                ["kind"] = ResourceKind.AuditEvent.Kind,
                ["apiVersion"] = ResourceKind.AuditEvent.ApiVersion,
                ["metadata"] = new JsonObject { ["name"] = e.Id.ToString(CultureInfo.InvariantCulture), ["creationTimestamp"] = ResourceJson.FormatTimestamp(e.At) },
                ["actor"] = e.Actor,
                ["role"] = e.Role,
                ["verb"] = e.Verb,
                ["path"] = e.Path,
                ["status"] = e.Status,
                ["detail"] = e.Detail,
            })]),
        });
    }

    internal static bool TryUtf8(byte[] bytes, out string text)
    {
        try
        {
            text = new System.Text.UTF8Encoding(false, throwOnInvalidBytes: true).GetString(bytes);
            return true;
        }
        catch (System.Text.DecoderFallbackException)
        {
            text = "";
            return false;
        }
    }

    private static async Task<IResult> PushBlobAsync(HttpContext context, IControlPlaneStore store, WasmHost wasm, CancellationToken cancellationToken)
    {
        if (context.Request.ContentLength > MaxBlobBytes)
        {
            return Error(new ApiStatus(413, "RequestEntityTooLarge", $"modules, files archives and models are limited to {MaxBlobBytes / (1024 * 1024)} MiB"));
        }

        using var buffer = new MemoryStream();
        await context.Request.Body.CopyToAsync(buffer, cancellationToken);
        if (buffer.Length > MaxBlobBytes)
        {
            return Error(new ApiStatus(413, "RequestEntityTooLarge", $"modules, files archives and models are limited to {MaxBlobBytes / (1024 * 1024)} MiB"));
        }

        var content = buffer.ToArray();
        // ?type=files: the packed content of an app's spec.files; ?type=model: an ONNX model; else a module.
        var type = context.Request.Query["type"].ToString();
        IReadOnlyList<string> problems = type switch
        {
            "files" => FilesArchive.Validate(content),
            "model" => OnnxModelFile.Problem(content) is { } problem ? [problem] : [],
            _ => wasm.Validate(content),
        };
        if (problems.Count > 0)
        {
            var what = type is "files" or "model" ? type : "module";
            return Error(ApiStatus.Invalid(what == "files" ? "Files" : what == "model" ? "Model" : "Module", null,
                [.. problems.Select(p => new StatusCause(what, p))], $"{(what == "files" ? "files archive" : what)} rejected"));
        }

        var digest = Digest.Compute(content);
        var created = await store.PutBlobAsync(digest, content, cancellationToken);
        return Json(new JsonObject { ["digest"] = digest, ["size"] = content.Length, ["created"] = created }, created ? 201 : 200);
    }

    private static async Task<IResult> GetBlobAsync(string digest, IControlPlaneStore store, CancellationToken cancellationToken)
    {
        if (!Digest.IsValid(digest))
        {
            return Error(ApiStatus.BadRequest($"'{digest}' is not a digest: expected sha256:<64 hex>"));
        }

        var size = await store.GetBlobSizeAsync(digest, cancellationToken);
        return size is null
            ? Error(ApiStatus.NotFound("Module", digest))
            : Json(new JsonObject { ["digest"] = digest, ["size"] = size });
    }

    internal static async Task<(JsonObject? Body, ApiStatus? Error)> ReadObjectAsync(HttpContext context, CancellationToken cancellationToken)
    {
        try
        {
            var node = await JsonNode.ParseAsync(context.Request.Body, cancellationToken: cancellationToken);
            return node is JsonObject obj ? (obj, null) : (null, ApiStatus.BadRequest("the request body must be a JSON object"));
        }
        catch (JsonException ex)
        {
            return (null, ApiStatus.BadRequest($"the request body is not valid JSON: {ex.Message}"));
        }
    }

    internal static IResult Json(JsonNode node, int status = 200) =>
        Results.Text(node.ToJsonString(), "application/json", statusCode: status);

    internal static IResult Error(ApiStatus status) => Json(status.ToJson(), status.Code);

    internal static string Revision(long revision) => revision.ToString(CultureInfo.InvariantCulture);
}
