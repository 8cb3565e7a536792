using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Server.Kestrel.Https;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Outpost.Core.Api;
using Outpost.Core.Store;
using Outpost.Core.Tokens;
using Outpost.Core.Security;
using Outpost.Server.Api;
using Outpost.Server.Security;
using Outpost.Server.Store;
using Outpost.Server.Sync;
using Outpost.Wasm.Hosting;

namespace Outpost.Server.Hosting;

/// <summary>
/// Builds and runs the control plane: one port, TLS by default (HTTP/1.1 and HTTP/2 by ALPN,
/// certificates from the server's own CA). With --insecure-http the port speaks cleartext
/// HTTP/2 only (gRPC needs HTTP/2, and Kestrel cannot offer HTTP/1.1 and h2c on one port).
/// </summary>
public sealed partial class OutpostServer : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly ServerOptions _options;

    private readonly CertificateAuthority? _authority;

    private OutpostServer(WebApplication app, ServerOptions options, CertificateAuthority? authority)
    {
        _app = app;
        _options = options;
        _authority = authority;
    }

    /// <summary>The CA bundle clients and agents trust (null with --insecure-http).</summary>
    public TrustBundle? Trust => _authority?.Trust;

    /// <summary>The URL agents and clients use, known once started (port 0 resolves then).</summary>
    public string Url { get; private set; } = "";

    /// <summary>The ingress listener's URL (known once started), or null without --ingress.</summary>
    public string? IngressUrl { get; private set; }

    /// <summary>Where the client config with the admin token was written.</summary>
    public string ConfigPath => Path.Combine(_options.DataDir, "config.yaml");

    /// <summary>The same connection for kubectl (export KUBECONFIG=...).</summary>
    public string KubeconfigPath => Path.Combine(_options.DataDir, "kubeconfig.yaml");

    public IServiceProvider Services => _app.Services;

    /// <summary>Concurrent streams one connection may open: a node's wires (each its own stream) and its sync stream.</summary>
    public const int MaxWiresPerNode = 32 * 1024;

    /// <summary>How long a TLS handshake may take: past the agent's own wait for one (<c>SyncClient.HandshakeTimeout</c>).</summary>
    public static readonly TimeSpan HandshakeTimeout = TimeSpan.FromSeconds(90);

    public static OutpostServer Create(ServerOptions options, Action<ILoggingBuilder>? logging = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        Directory.CreateDirectory(options.DataDir);
        var endpoint = ListenAddress.Parse(options.Listen);
        if (options.Datastore is not null)
        {
            // Before the CA is loaded: a server joining a datastore takes the CA the first one stored.
            ServerBootstrap.ShareAsync(options, CancellationToken.None).GetAwaiter().GetResult();
        }

        var authority = options.InsecureHttp ? null : CertificateAuthority.LoadOrCreate(Path.Combine(options.DataDir, "tls"),
            CertificateAuthority.NamesFor(endpoint), options.TimeProvider.GetUtcNow(), options.TlsCertFile, options.TlsKeyFile);

        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions
        {
            ContentRootPath = options.DataDir,
            EnvironmentName = Environments.Production,
            // No appsettings.json is read, and a watch for it on the content root (the data dir)
            // woke on every SQLite write: ~3 % of an idle 2,000-node server's CPU.
            Args = ["--hostBuilder:reloadConfigOnChange=false"],
        });
        builder.Logging.ClearProviders();
        builder.Logging.AddSimpleConsole(o =>
        {
            o.SingleLine = true;
            o.TimestampFormat = "HH:mm:ss ";
        });
        builder.Logging.SetMinimumLevel(LogLevel.Information);
        builder.Logging.AddFilter("Microsoft.AspNetCore", LogLevel.Warning);
        builder.Logging.AddFilter("Grpc", LogLevel.Warning);
        builder.Logging.AddFilter("Microsoft.Hosting.Lifetime", LogLevel.Warning);
        logging?.Invoke(builder.Logging);

        // A fleet reconnecting at once (a restart, a cut link) sends thousands of SYNs together: a deep
        // accept queue holds them until the handshakes are taken (the kernel caps it at somaxconn),
        // where the default 512 drops the rest to SYN retries and agents' connect timeouts.
        builder.WebHost.UseSockets(sockets => sockets.Backlog = 16_384);
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.AddServerHeader = false;
            kestrel.Listen(endpoint, listen =>
            {
                if (authority is null)
                {
                    listen.Protocols = HttpProtocols.Http2;
                    return;
                }

                listen.Protocols = HttpProtocols.Http1AndHttp2;
                listen.UseHttps(new HttpsConnectionAdapterOptions
                {
                    ServerCertificate = authority.ServingCertificate,
                    // API clients bring bearer tokens; nodes bring certificates from this CA.
                    ClientCertificateMode = ClientCertificateMode.AllowCertificate,
                    // The handshake builds the node's chain against the fleet CA alone (one build, not
                    // one against the system store and another here): a clean result is the answer.
                    OnAuthenticate = (_, ssl) => ssl.CertificateChainPolicy = authority.NodeTrust.ChainPolicy(TrustBundle.ClientAuthOid),
                    ClientCertificateValidation = (certificate, chain, errors) =>
                        chain is not null && authority.NodeTrust.BuiltWithThisBundle(chain)
                            ? errors == System.Net.Security.SslPolicyErrors.None
                            : authority.NodeTrust.Validate(certificate, chain, TrustBundle.ClientAuthOid) is null,
                    // A reconnect storm queues thousands of handshakes on a small server: give each time
                    // to finish rather than cut it at Kestrel's 10 s, which turns the queue into retries.
                    HandshakeTimeout = HandshakeTimeout,
                });
                // Most of a server's connections are idle nodes: let OpenSSL free their record buffers between records.
                listen.Use(next => connection =>
                {
                    Core.Net.TlsIdleBuffers.Release(connection.Features.Get<Microsoft.AspNetCore.Server.Kestrel.Core.Features.ISslStreamFeature>()?.SslStream);
                    return next(connection);
                });
            });
            if (options.Ingress is { } ingress)
            {
                // Public ingress: plain HTTP/1.1, no token; its connections are marked so nothing but ingress answers them.
                kestrel.Listen(ListenAddress.Parse(ingress), listen =>
                {
                    listen.Protocols = HttpProtocols.Http1;
                    listen.Use(next => connection =>
                    {
                        connection.Items[Mesh.MeshProxy.IngressItem] = true;
                        return next(connection);
                    });
                });
            }

            // Free the streams of agents whose link died silently (no FIN, no RST); the node's lease
            // says sooner that it is gone. Rare pings: an idle node's link carries little else.
            kestrel.Limits.Http2.KeepAlivePingDelay = TimeSpan.FromSeconds(60);
            kestrel.Limits.Http2.KeepAlivePingTimeout = TimeSpan.FromSeconds(20);
            // Wires share a node's one connection: a wire whose reader stopped holds at most its own
            // window (1 MiB), and the connection's is large enough that dozens of such wires still
            // leave the others all they can use (a small connection window is one slow socket
            // stalling every wire of the node). Memory is spent only on bytes that did arrive.
            kestrel.Limits.Http2.InitialStreamWindowSize = 1024 * 1024;
            kestrel.Limits.Http2.InitialConnectionWindowSize = 64 * 1024 * 1024;
            // Every wire of a node is a stream of its one connection: Kestrel's default of 100 would
            // make the 100th wait (silently, inside the agent) for another to end.
            kestrel.Limits.Http2.MaxStreamsPerConnection = MaxWiresPerNode;
            kestrel.Limits.MaxRequestBodySize = ApiEndpoints.MaxBlobBytes + (1024 * 1024);
        });

        var services = builder.Services;
        services.AddSingleton(options);
        services.AddSingleton(options.TimeProvider);
        services.AddSingleton(new ServerTls(authority));
        services.AddSingleton(_ => SecretBox.LoadOrCreate(Path.Combine(options.DataDir, "secrets.key")));
        services.AddSingleton<IControlPlaneStore>(_ => options.Datastore is { } datastore
            ? new PostgresControlPlaneStore(datastore, options.TimeProvider)
            : new SqliteControlPlaneStore(Path.Combine(options.DataDir, "outpost.db"), options.TimeProvider));
        services.AddSingleton(sp => sp.GetRequiredService<IControlPlaneStore>().Changes);
        services.AddSingleton<BucketSync>();
        services.AddSingleton<Leadership>();
        services.AddHostedService(sp => sp.GetRequiredService<Leadership>());
        services.AddSingleton<Monitoring.IMetricsSource>(sp => sp.GetRequiredService<Leadership>());
        services.AddSingleton<JoinGuard>();
        services.AddSingleton<NodeLeases>();
        services.AddSingleton<FleetPresence>();
        services.AddHostedService(sp => sp.GetRequiredService<FleetPresence>());
        services.AddSingleton<SyncAccounting>();
        services.AddHostedService<HistoryCompactor>();
        services.AddSingleton<RolloutController>();
        services.AddHostedService(sp => sp.GetRequiredService<RolloutController>());
        services.AddSingleton<NodeDesiredState>();
        services.AddSingleton<ChangeRouter>();
        services.AddHostedService(sp => sp.GetRequiredService<ChangeRouter>());
        services.AddHostedService<NodeMonitor>();
        services.AddSingleton<HeapTrim>();
        services.AddHostedService(sp => sp.GetRequiredService<HeapTrim>());
        services.AddHostedService<Monitoring.ServerLife>();
        services.AddSingleton<Monitoring.MetricsRecorder>();
        services.AddHostedService(sp => sp.GetRequiredService<Monitoring.MetricsRecorder>());
        services.AddSingleton<Monitoring.LogArchive>();
        services.AddHostedService(sp => sp.GetRequiredService<Monitoring.LogArchive>());
        services.AddSingleton<Monitoring.IMetricsSource>(sp => sp.GetRequiredService<Monitoring.LogArchive>());
        services.AddSingleton(sp => new Monitoring.WebhookSender(sp.GetRequiredService<ILogger<Monitoring.WebhookSender>>()));
        services.AddSingleton<Monitoring.IMetricsSource>(sp => sp.GetRequiredService<Monitoring.WebhookSender>());
        services.AddSingleton<Monitoring.AlertEvaluator>();
        services.AddHostedService(sp => sp.GetRequiredService<Monitoring.AlertEvaluator>());
        services.AddSingleton<Monitoring.IMetricsSource>(sp => sp.GetRequiredService<Monitoring.AlertEvaluator>());
        services.AddSingleton<Monitoring.ServerMetrics>();
        services.AddSingleton<ResourceView>();
        services.AddSingleton<Mesh.WireRelay>();
        services.AddSingleton<Mesh.MeshRegistry>();
        services.AddSingleton<Mesh.MeshProxy>();
        services.AddSingleton<Mesh.MeshDialer>();
        services.AddSingleton<Mesh.ServiceTraffic>();
        services.AddSingleton<Mesh.MeshPublisher>();
        services.AddHostedService(sp => sp.GetRequiredService<Mesh.MeshPublisher>());
        services.AddHostedService<Mesh.EndpointProber>();
        services.AddSingleton<Monitoring.IMetricsSource, Mesh.MeshMetrics>();
        services.AddSingleton<Monitoring.IMetricsSource, Monitoring.RuntimeMetrics>();
        services.AddSingleton<ResourceWriter>();
        services.AddSingleton<Registry.ImageBlobs>();
        // Only validates pushed modules: a small pool is plenty.
        services.AddSingleton(_ => new WasmHost(new WasmHostOptions { MaxInstances = 4 }));
        services.AddGrpc(o => o.MaxReceiveMessageSize = 4 * 1024 * 1024);

        var app = builder.Build();
        app.Use((context, next) => Mesh.MeshProxy.IsIngress(context)
            ? context.RequestServices.GetRequiredService<Mesh.MeshProxy>().IngressAsync(context)
            : next(context));
        app.Use(DatastoreUnavailableAsync);
        app.Use(ApiAuthenticationAsync);
        app.MapOutpostApi();
        Ui.DashboardEndpoints.MapDashboard(app);
        Registry.RegistryEndpoints.MapRegistry(app);
        app.MapGrpcService<EdgeSyncService>();
        app.MapFallback((HttpContext context) => ApiEndpoints.Error(new ApiStatus(404, StatusReasons.NotFound, $"the server could not find the requested resource ({context.Request.Method} {context.Request.Path})")));
        var logger = app.Services.GetRequiredService<ILogger<OutpostServer>>();
        if (authority is null)
        {
            LogInsecure(logger);
        }
        else if (Core.Net.TlsIdleBuffers.Unavailable is { } why)
        {
            LogTlsBuffersKept(logger, why);
        }

        return new OutpostServer(app, options, authority);
    }

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        var store = _app.Services.GetRequiredService<IControlPlaneStore>();
        await store.InitializeAsync(cancellationToken);
        await _app.StartAsync(cancellationToken);
        var addresses = _app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.ToList();
        var address = addresses[0];
        if (_options.Ingress is not null && addresses.Count > 1)
        {
            IngressUrl = addresses[1].Replace("[::]", "127.0.0.1", StringComparison.Ordinal).Replace("0.0.0.0", "127.0.0.1", StringComparison.Ordinal);
        }

        Url = address.Replace("[::]", "127.0.0.1", StringComparison.Ordinal).Replace("0.0.0.0", "127.0.0.1", StringComparison.Ordinal);
        await WriteClientConfigAsync(store, cancellationToken);
    }

    /// <summary>
    /// Writes config.yaml (0600) with the server URL and an admin token. The first start
    /// creates the token; later starts keep it and refresh the URL.
    /// </summary>
    private async Task WriteClientConfigAsync(IControlPlaneStore store, CancellationToken cancellationToken)
    {
        string? token = null;
        if (File.Exists(ConfigPath))
        {
            try
            {
                var existing = ClientConfig.Parse(await File.ReadAllTextAsync(ConfigPath, cancellationToken), ConfigPath);
                if (TokenCodec.TryParse(existing.Token, out var kind, out var id, out var secret) && kind == TokenKind.Api
                    && await store.GetTokenAsync(id, cancellationToken) is { } record
                    && TokenCodec.Verify(record, TokenKind.Api, secret, _options.TimeProvider.GetUtcNow()))
                {
                    token = existing.Token;
                }
            }
            catch (Core.Manifests.ManifestException)
            {
                // Unreadable: replaced below with a fresh admin token.
            }
        }

        if (token is null)
        {
            var issued = TokenCodec.Issue(TokenKind.Api, _options.TimeProvider.GetUtcNow(), description: "admin token created on first start");
            await store.CreateTokenAsync(issued.Record, cancellationToken);
            token = issued.Token;
        }

        var config = new ClientConfig(Url, token, _authority?.Trust.Pem);
        PrivateFile.Write(ConfigPath, config.ToYaml());
        PrivateFile.Write(KubeconfigPath, config.ToKubeconfig());
    }

    public Task WaitForShutdownAsync(CancellationToken cancellationToken) => _app.WaitForShutdownAsync(cancellationToken);

    public Task StopAsync(CancellationToken cancellationToken) => _app.StopAsync(cancellationToken);

    public async ValueTask DisposeAsync()
    {
        await _app.DisposeAsync();
        _authority?.Dispose();
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "--insecure-http: the API and agent sync travel in cleartext, tokens included; use only where the network itself is trusted")]
    private static partial void LogInsecure(ILogger logger);

    [LoggerMessage(Level = LogLevel.Information, Message = "Idle TLS connections keep OpenSSL's record buffers (~34 KB each): {Why}")]
    private static partial void LogTlsBuffersKept(ILogger logger, string why);

    /// <summary>Where an endpoint leaves a summary of what a mutation did, for the audit log.</summary>
    public const string AuditDetailKey = "outpost.audit.detail";

    /// <summary>Where the caller's role is kept for endpoints that depend on it.</summary>
    public const string RoleKey = "outpost.role";

    /// <summary>Where the caller's token id and its name in the audit log are kept.</summary>
    public const string ActorKey = "outpost.actor";

    /// <summary>
    /// A request the datastore could not serve (out of reach, refusing connections, shutting
    /// down) is answered 503 with the reason and Retry-After, never as if it had been done:
    /// the client tries again, or another replica.
    /// </summary>
    private static async Task DatastoreUnavailableAsync(HttpContext context, RequestDelegate next)
    {
        try
        {
            await next(context);
        }
        catch (Exception ex) when (!context.Response.HasStarted && !context.RequestAborted.IsCancellationRequested && PostgresControlPlaneStore.IsUnavailable(ex))
        {
            context.Response.Clear();
            context.Response.Headers.RetryAfter = "5";
            await ApiEndpoints.Error(new ApiStatus(503, StatusReasons.ServiceUnavailable,
                $"the datastore cannot be reached ({ex.GetBaseException().Message.Trim()}): nothing was written; try again")).ExecuteAsync(context);
        }
    }

    /// <summary>
    /// Every REST API call needs an API token: admins may do anything, viewers only read.
    /// Every mutation, and every refused attempt at one, goes to the audit log: who (the
    /// token's id and description), what (verb and path, plus a summary from the endpoint),
    /// when, and the status it ended with. /proxy (the cloud gateway into nodes) takes admin
    /// tokens only, and every request through it is audited. /metrics takes any API token (Prometheus sends one
    /// with `authorization: {credentials: ...}`). Health, version and /cacerts are open; the agent
    /// endpoint authenticates nodes by certificate.
    /// </summary>
    private static async Task ApiAuthenticationAsync(HttpContext context, RequestDelegate next)
    {
        var path = context.Request.Path;
        var proxied = path.StartsWithSegments("/proxy");
        var registry = path.StartsWithSegments("/v2");
        if (!proxied && !registry && !path.StartsWithSegments("/api") && !path.StartsWithSegments("/apis") && !path.StartsWithSegments("/metrics") && !path.StartsWithSegments("/openapi"))
        {
            await next(context);
            return;
        }

        // The registry also takes the token as Basic auth's password: what docker login, podman and skopeo send.
        var header = context.Request.Headers.Authorization.ToString();
        var token = header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase) ? header[7..].Trim()
            : registry && header.StartsWith("Basic ", StringComparison.OrdinalIgnoreCase) ? BasicPassword(header[6..].Trim())
            : "";
        if (token.Length == 0)
        {
            await RefuseAsync(context, registry, ApiStatus.Unauthorized(registry
                ? "Unauthorized: log in with an API token as the password (any user name), or send 'Authorization: Bearer <API token>'"
                : "Unauthorized: send 'Authorization: Bearer <API token>' (see config.yaml in the server's data dir)"));
            return;
        }

        var store = context.RequestServices.GetRequiredService<IControlPlaneStore>();
        var time = context.RequestServices.GetRequiredService<TimeProvider>();
        if (!TokenCodec.TryParse(token, out var kind, out var id, out var secret)
            || await store.GetTokenAsync(id, context.RequestAborted) is not { } record
            || !TokenCodec.Verify(record, kind, secret, time.GetUtcNow()))
        {
            await RefuseAsync(context, registry, ApiStatus.Unauthorized("Unauthorized: the token is unknown, revoked or expired"));
            return;
        }

        if (kind != TokenKind.Api)
        {
            await RefuseAsync(context, registry, new ApiStatus(403, StatusReasons.Forbidden, $"Forbidden: a {kind.ToString().ToLowerInvariant()} token cannot use the API"));
            return;
        }

        var role = record.Role ?? Roles.Admin;
        var actor = record.Description is { Length: > 0 } description ? $"token/{record.Id} ({description})" : $"token/{record.Id}";
        context.Items[RoleKey] = role;
        context.Items[ActorKey] = (record.Id, actor);
        // Through the proxy any request may change something on a node: admins only, every one audited.
        // "Who am I" is a POST that changes nothing (kubectl auth whoami, the dashboard's sign-in).
        var mutating = proxied || (!HttpMethods.IsGet(context.Request.Method) && !HttpMethods.IsHead(context.Request.Method)
            && !Api.SelfSubjectReview.Handles(context.Request));
        if (mutating && role != Roles.Admin)
        {
            await RefuseAsync(context, registry, new ApiStatus(403, StatusReasons.Forbidden, proxied
                ? $"Forbidden: the {role} role may not reach nodes; {context.Request.Method} {path} needs an admin token"
                : $"Forbidden: the {role} role may only read; {context.Request.Method} {path} needs an admin token"));
            await AuditAsync(context, store, time, actor, role, "denied: role may only read");
            return;
        }

        try
        {
            await next(context);
        }
        catch (Exception ex) when (!context.Response.HasStarted && !context.RequestAborted.IsCancellationRequested && !PostgresControlPlaneStore.IsUnavailable(ex))
        {
            // A fault of the server's own: the caller (who holds a token) is told what it was, as a
            // Status like any other error, and the server logs the whole of it.
            LogUnhandled(context.RequestServices.GetRequiredService<ILogger<OutpostServer>>(), context.Request.Method, path, ex);
            context.Response.Clear();
            await ApiEndpoints.Error(new ApiStatus(500, StatusReasons.InternalError,
                $"internal error: {ex.GetType().Name}: {ex.Message} (the server logged it)")).ExecuteAsync(context);
        }

        if (mutating)
        {
            await AuditAsync(context, store, time, actor, role, context.Items[AuditDetailKey] as string);
        }
    }

    /// <summary>A refusal in the caller's language: a Status for the API, the distribution spec's errors for the registry.</summary>
    private static Task RefuseAsync(HttpContext context, bool registry, ApiStatus status) => registry
        ? Registry.RegistryEndpoints.ErrorAsync(context, status.Code, status.Code == 401 ? "UNAUTHORIZED" : "DENIED", status.Message)
        : ApiEndpoints.Error(status).ExecuteAsync(context);

    private static string BasicPassword(string encoded)
    {
        try
        {
            var decoded = System.Text.Encoding.UTF8.GetString(Convert.FromBase64String(encoded));
            var colon = decoded.IndexOf(':', StringComparison.Ordinal);
            return colon < 0 ? "" : decoded[(colon + 1)..];
        }
        catch (FormatException)
        {
            return "";
        }
    }

    [LoggerMessage(Level = LogLevel.Error, Message = "{Method} {Path} failed")]
    private static partial void LogUnhandled(ILogger logger, string method, string path, Exception exception);

    private static Task AuditAsync(HttpContext context, IControlPlaneStore store, TimeProvider time, string actor, string role, string? detail) =>
        store.AppendAuditAsync(new AuditEntry(0, time.GetUtcNow(), actor, role, context.Request.Method,
            context.Request.Path + context.Request.QueryString, context.Response.StatusCode, detail), CancellationToken.None);
}
