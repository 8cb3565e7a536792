using System.Text;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Outpost.Agent.Apps;
using Outpost.Agent.Hosting;
using Outpost.Agent.Triggers;
using Outpost.Wasm.Wagi;

namespace Outpost.Agent.Gateway;

/// <summary>
/// The node's local HTTP gateway: routes each request by path prefix to an app, which its runtime
/// answers (a fresh Wasm instance, or the app's container). A failing app fails only its own request.
/// </summary>
public sealed partial class GatewayHandler(AppRegistry apps, WagiRunner runner, GuestThreads threads, TriggerScheduler triggers, Sync.SyncClient sync,
    State.AgentStore store, State.LocalDataStore data, Host.AgentHostServices services, Monitoring.AgentMetrics metrics, Monitoring.LogRing logs, AgentOptions options, ILogger<GatewayHandler> logger)
{
    private readonly ServeServices _serving = new(logs, options.MaxRequestBodyBytes, logger, runner, threads);

    public async Task HandleAsync(HttpContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        var path = context.Request.Path.Value is { Length: > 0 } p ? p : "/";
        var target = Mesh.MeshListener.TargetApp(context);
        if (target == Mesh.MeshListener.ExecTarget)
        {
            await ExecAsync(context, path.TrimStart('/'));
            return;
        }

        if (target is not null)
        {
            // A wire to this node as an endpoint of a service: the app answers every path, whatever its route.
            var endpoint = apps.Named(target);
            if (endpoint is null || !endpoint.TryAcquire())
            {
                // The app left this node: close the connection too, so the client's next one is
                // carried to an endpoint that has it (a kept-alive connection is bound to this node).
                context.Response.Headers.Connection = "close";
                await WriteTextAsync(context, 503, $"503 service unavailable: app {target} does not run on node {options.NodeName}\n");
                return;
            }

            await ServeAsync(context, endpoint, "/", path);
            return;
        }

        if (path == "/_outpost/healthz")
        {
            await WriteTextAsync(context, 200, "ok\n");
            return;
        }

        if (path == "/_outpost/status")
        {
            await WriteStatusAsync(context);
            return;
        }

        if (path == "/_outpost/metrics")
        {
            context.Response.ContentType = Core.Metrics.PrometheusText.ContentType;
            await context.Response.WriteAsync(metrics.Render(), context.RequestAborted);
            return;
        }

        if (path.StartsWith("/_outpost/kv/", StringComparison.Ordinal))
        {
            await KvAsync(context, path["/_outpost/kv/".Length..]);
            return;
        }

        if (path.StartsWith("/_outpost/topics/", StringComparison.Ordinal))
        {
            await PublishAsync(context, path["/_outpost/topics/".Length..]);
            return;
        }

        var app = apps.Match(path);
        if (app is null || !app.TryAcquire())
        {
            await WriteTextAsync(context, 404, $"404 not found: no app serves {path} on node {options.NodeName}\n");
            return;
        }

        await ServeAsync(context, app, app.Spec.Http!.Route, path);
    }

    /// <summary>Runs one request in the app (acquired by the caller, released here) and writes its answer.</summary>
    private async Task ServeAsync(HttpContext context, LoadedApp app, string route, string path)
    {
        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        var timeout = TimeSpan.FromMilliseconds(app.Spec.Limits.TimeoutMs);
        if (!await app.Gate.EnterAsync(timeout, context.RequestAborted))
        {
            app.Counters.RecordLimit(AppLimitKind.Concurrency);
            app.Release();
            context.Response.Headers.RetryAfter = "1";
            await WriteTextAsync(context, 503, $"503 service unavailable: app {app.Name} is at its concurrency limit ({app.Gate.Limit}); retry shortly\n");
            return;
        }

        try
        {
            var outcome = await app.Instance.ServeAsync(context, new AppRequest(app, route, path, _serving));
            if (outcome.Counted)
            {
                apps.Observe(app, outcome.Status, System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalSeconds, outcome.Limit, outcome.MemoryBytes);
            }
        }
        finally
        {
            app.Gate.Exit();
            app.Release();
        }
    }

    /// <summary>
    /// `outpost exec`: runs a command in an app's container (POST {"command": [...]}) and answers its
    /// exit code and output. Reached only over a wire the server opened for an admin (see ExecTarget).
    /// </summary>
    private async Task ExecAsync(HttpContext context, string name)
    {
        if (!HttpMethods.IsPost(context.Request.Method))
        {
            await WriteTextAsync(context, 405, "405 method not allowed: POST {\"command\": [...]}\n");
            return;
        }

        var body = await ReadBodyAsync(context, 64 * 1024);
        var command = body is null ? null : (System.Text.Json.Nodes.JsonNode.Parse(body.Value.Span) as System.Text.Json.Nodes.JsonObject)?["command"] as System.Text.Json.Nodes.JsonArray;
        var argv = command?.Select(a => a is System.Text.Json.Nodes.JsonValue v && v.TryGetValue<string>(out var s) ? s : null).ToList();
        if (argv is null || argv.Count == 0 || argv.Any(a => a is null))
        {
            await WriteTextAsync(context, 400, "400 bad request: send {\"command\": [\"program\", \"arg\", ...]}\n");
            return;
        }

        var app = apps.Named(name);
        if (app is null)
        {
            await WriteTextAsync(context, 404, $"404 not found: app {name} does not run on node {options.NodeName}\n");
            return;
        }

        if (!OperatingSystem.IsLinux() || app.Instance is not ContainerAppInstance container)
        {
            await WriteTextAsync(context, 400, $"400 bad request: app {name} is a Wasm app; only container apps have a process to run commands beside\n");
            return;
        }

        try
        {
            var (exitCode, output, error) = await container.Container.ExecAsync(argv!, context.RequestAborted);
            logs.Write("info", app.Name, app.Version.Generation, $"exec {string.Join(' ', argv!)}: exit code {exitCode}");
            context.Response.ContentType = "application/json";
            await context.Response.WriteAsync(new System.Text.Json.Nodes.JsonObject { ["exitCode"] = exitCode, ["stdout"] = output, ["stderr"] = error }.ToJsonString(), context.RequestAborted);
        }
        catch (InvalidOperationException ex)
        {
            await WriteTextAsync(context, 409, $"409 conflict: {ex.Message}\n");
        }
    }

    /// <summary>The node's own view, for an operator on site: sync state, outbox and stream counters.</summary>
    private async Task WriteStatusAsync(HttpContext context)
    {
        var outbox = data.Stats;
        var counters = new System.Text.Json.Nodes.JsonObject();
        foreach (var (key, (messages, bytes)) in sync.Counters.OrderBy(p => p.Key, StringComparer.Ordinal))
        {
            counters[key] = new System.Text.Json.Nodes.JsonObject { ["messages"] = messages, ["bytes"] = bytes };
        }

        var status = new System.Text.Json.Nodes.JsonObject
        {
            ["node"] = options.NodeName,
            ["connected"] = sync.Connected,
            ["appliedRevision"] = store.AppliedRevision,
            ["apps"] = new System.Text.Json.Nodes.JsonObject(apps.Status.Select(p => KeyValuePair.Create(p.Key, (System.Text.Json.Nodes.JsonNode?)p.Value.State))),
            ["outbox"] = new System.Text.Json.Nodes.JsonObject
            {
                ["pendingRecords"] = outbox.PendingRecords,
                ["pendingBytes"] = outbox.PendingBytes,
                ["droppedTotal"] = outbox.DroppedTotal,
            },
            ["sync"] = counters,
        };
        context.Response.ContentType = "application/json";
        await context.Response.WriteAsync(status.ToJsonString(), context.RequestAborted);
    }

    /// <summary>A device publishes to a local topic: durable in the outbox before 202, then fanned out to subscribers.</summary>
    private async Task PublishAsync(HttpContext context, string topic)
    {
        if (!HttpMethods.IsPost(context.Request.Method))
        {
            context.Response.Headers.Allow = "POST";
            await WriteTextAsync(context, 405, "405 method not allowed: POST a message to /_outpost/topics/{topic}\n");
            return;
        }

        if (!Core.Manifests.ManifestValidator.IsTopic(topic))
        {
            await WriteTextAsync(context, 400, $"400 bad request: '{topic}' is not a topic name (1 to 128 letters, digits, '.', '_' or '-')\n");
            return;
        }

        var body = await ReadBodyAsync(context, options.MaxRequestBodyBytes);
        if (body is null)
        {
            await WriteTextAsync(context, 413, $"413 message larger than {options.MaxRequestBodyBytes} bytes\n");
            return;
        }

        var sequence = triggers.Publish(topic, "gateway", body.Value.ToArray());
        if (sequence < 0)
        {
            context.Response.Headers.RetryAfter = "5";
            await WriteTextAsync(context, 507, "507 insufficient storage: the node's outbox is full and its policy is rejectNew\n");
            return;
        }

        context.Response.StatusCode = 202;
        context.Response.ContentType = "application/json";
        await context.Response.WriteAsync($$"""{"topic":"{{topic}}","sequence":{{sequence}}}""", context.RequestAborted);
    }

    /// <summary>
    /// Devices on the node's network read and write its buckets as apps do:
    /// GET/PUT/DELETE /_outpost/kv/{bucket}/{key}. Writes are durable before the answer and
    /// sync as the bucket's direction says; a cloud-to-edge bucket is read-only here.
    /// </summary>
    private async Task KvAsync(HttpContext context, string rest)
    {
        var slash = rest.IndexOf('/', StringComparison.Ordinal);
        if (slash <= 0 || slash == rest.Length - 1)
        {
            await WriteTextAsync(context, 400, "400 bad request: use /_outpost/kv/{bucket}/{key}\n");
            return;
        }

        var (bucket, key) = (rest[..slash], rest[(slash + 1)..]);
        var method = context.Request.Method;
        if (HttpMethods.IsGet(method))
        {
            var value = data.KvGet(bucket, key);
            if (value is null)
            {
                await WriteTextAsync(context, 404, $"404 not found: no key '{key}' in bucket '{bucket}' on node {options.NodeName}\n");
                return;
            }

            context.Response.ContentType = "application/octet-stream";
            await context.Response.Body.WriteAsync(value, context.RequestAborted);
            return;
        }

        if (!HttpMethods.IsPut(method) && !HttpMethods.IsDelete(method))
        {
            context.Response.Headers.Allow = "GET, PUT, DELETE";
            await WriteTextAsync(context, 405, "405 method not allowed: GET, PUT or DELETE /_outpost/kv/{bucket}/{key}\n");
            return;
        }

        if (!services.BucketOf(bucket).EdgeWritable)
        {
            await WriteTextAsync(context, 403, $"403 forbidden: bucket '{bucket}' is cloud-to-edge, read-only on the node\n");
            return;
        }

        if (HttpMethods.IsDelete(method))
        {
            var deleted = services.KvDelete("gateway", bucket, key);
            await WriteTextAsync(context, deleted > 0 ? 200 : 404, deleted > 0 ? "deleted\n" : $"404 not found: no key '{key}' in bucket '{bucket}'\n");
            return;
        }

        var body = await ReadBodyAsync(context, options.MaxRequestBodyBytes);
        if (body is null)
        {
            await WriteTextAsync(context, 413, $"413 value larger than {options.MaxRequestBodyBytes} bytes\n");
            return;
        }

        if (!services.KvSet("gateway", bucket, key, body.Value.Span))
        {
            await WriteTextAsync(context, 400, $"400 bad request: {Core.Resources.BucketSpec.KeyOrValueProblem(key, body.Value.Length)}\n");
            return;
        }

        context.Response.StatusCode = 204;
    }

    private static Task<ReadOnlyMemory<byte>?> ReadBodyAsync(HttpContext context, int limit) => WasmAppInstance.ReadBodyAsync(context, limit);

    private static Task WriteTextAsync(HttpContext context, int status, string text) => WasmAppInstance.WriteTextAsync(context, status, text);
}
