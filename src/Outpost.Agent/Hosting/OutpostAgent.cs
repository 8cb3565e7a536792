using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Outpost.Agent.Apps;
using Outpost.Agent.Gateway;
using Outpost.Agent.State;
using Outpost.Agent.Sync;
using Outpost.Wasm.Hosting;
using Outpost.Wasm.Wagi;

namespace Outpost.Agent.Hosting;

/// <summary>
/// The edge agent process: local state first (so apps serve even with the server down),
/// then the gateway, then the sync loop in the background.
/// </summary>
public sealed partial class OutpostAgent : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly Task<LocalStores> _stores;
    private readonly LocalState _localState;

    private OutpostAgent(WebApplication app, Task<LocalStores> stores, LocalState localState)
    {
        _app = app;
        _stores = stores;
        _localState = localState;
    }

    /// <summary>The gateway's URL, known once started.</summary>
    public string GatewayUrl => _app.Services.GetRequiredService<GatewayInfo>().Url;

    /// <summary>Why the agent stopped on its own, if it did.</summary>
    public string? FatalError => _app.Services.GetRequiredService<AgentLifetime>().FatalError;

    public static OutpostAgent Create(AgentOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        Directory.CreateDirectory(options.DataDir);
        var endpoint = Outpost.Core.Api.ListenAddress.Parse(options.Gateway);

        // OpenSSL (~20 ms to load and configure) is first needed when the apps' modules are
        // checked against their digests; loading it here overlaps that with the rest of the start.
        _ = Task.Run(static () => System.Security.Cryptography.SHA256.HashData(ReadOnlySpan<byte>.Empty));

        // Wasmtime's start (its library verified and loaded, the engine and its instance pool made:
        // ~30 ms) runs beside the rest of the start, which needs it only when the apps load.
        var onnx = OnnxRuntimeOf(options);
        var wasmHost = Task.Run(() => new WasmHost(new WasmHostOptions
        {
            CacheDir = Path.Combine(options.DataDir, "compiled"),
            MaxInstances = options.MaxInstances,
            MaxMemoryMiB = options.MaxInstanceMemoryMiB,
            CompilerCommand = CompilerCommand(options.CompileInChild),
            Models = onnx.Library is { } library ? new Wasm.Nn.NnSessions(library) : null,
        }));
        try
        {
            return Create(options, endpoint, wasmHost);
        }
        catch
        {
            // Not handed to a container that would dispose it.
            _ = wasmHost.ContinueWith(t => t.Result.Dispose(), CancellationToken.None, TaskContinuationOptions.OnlyOnRanToCompletion, TaskScheduler.Default);
            throw;
        }
    }

    /// <summary>
    /// Where this node's ONNX Runtime is, or why it has none. Only located here: the library (29 MB)
    /// is mapped when the first app that runs inference needs it, not by every agent at start.
    /// </summary>
    internal static Apps.AiRuntime OnnxRuntimeOf(AgentOptions options) => options.OnnxRuntime switch
    {
        "off" => new Apps.AiRuntime(null, "ONNX Runtime is turned off on this node (--onnxruntime off)"),
        { } path => Wasm.Nn.OnnxRuntimeLibrary.Locate(path) is { } found ? new Apps.AiRuntime(found, null) : new Apps.AiRuntime(null, $"ONNX Runtime library {path} does not exist"),
        null => Wasm.Nn.OnnxRuntimeLibrary.Locate() is { } found ? new Apps.AiRuntime(found, null)
            : new Apps.AiRuntime(null, $"ONNX Runtime ({Wasm.Nn.OnnxRuntimeLibrary.FileName}) is not installed next to outpost or on LD_LIBRARY_PATH"),
    };

    private static OutpostAgent Create(AgentOptions options, System.Net.IPEndPoint endpoint, Task<WasmHost> wasmHost)
    {
        // The node's SQLite stores open on a second core while this thread builds the web host.
        var stores = Task.Run(() => LocalStores.Open(options));
        try
        {
            return Create(options, endpoint, wasmHost, stores);
        }
        catch
        {
            _ = stores.ContinueWith(t => t.Result.Dispose(), CancellationToken.None, TaskContinuationOptions.OnlyOnRanToCompletion, TaskScheduler.Default);
            throw;
        }
    }

    private static OutpostAgent Create(AgentOptions options, System.Net.IPEndPoint endpoint, Task<WasmHost> wasmHost, Task<LocalStores> stores)
    {
        var localState = new LocalState();
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions
        {
            ContentRootPath = options.DataDir,
            EnvironmentName = Environments.Production,
            // No appsettings.json is read, and a watch for it on the content root (the data dir)
            // woke on every SQLite write: ~3 % of an idle 2,000-node server's CPU.
            Args = ["--hostBuilder:reloadConfigOnChange=false"],
        });
        builder.Logging.ClearProviders();
        // The console logger's single-line form, without its services (Monitoring/ConsoleLineLogger.cs).
        builder.Logging.Services.AddSingleton<ILoggerProvider>(_ => new Monitoring.ConsoleLineLoggerProvider());
        builder.Logging.SetMinimumLevel(LogLevel.Information);
        builder.Logging.AddFilter("Microsoft", LogLevel.Warning);
        builder.Logging.AddFilter("Grpc", LogLevel.Warning);
        builder.Logging.AddFilter("System.Net.Http", LogLevel.Warning);
        builder.Logging.Services.AddSingleton<ILoggerProvider>(sp => new Monitoring.RingLoggerProvider(sp.GetRequiredService<Monitoring.LogRing>()));

        var usage = new Monitoring.NodeUsageProbe(options.DataDir);
        // A burst of wires connects to the mesh socket all at once: a backlog of 512 (the default)
        // would turn most of them away (a Unix socket refuses at once when its backlog is full).
        builder.WebHost.UseSockets(sockets => sockets.Backlog = 4096);
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.AddServerHeader = false;
            kestrel.Listen(endpoint, listen =>
            {
                listen.Protocols = HttpProtocols.Http1;
                listen.Use(next => async connection =>
                {
                    usage.ConnectionOpened();
                    try
                    {
                        await next(connection);
                    }
                    finally
                    {
                        usage.ConnectionClosed();
                    }
                });
            });
            // Wires the server relays to the gateway or an app: handed to Kestrel in process (Mesh/WireTransport.cs).
            kestrel.Listen(Mesh.WireTransport.EndPoint, listen => listen.Protocols = HttpProtocols.Http1);
            // This node's own programs reach its apps as service endpoints here (Mesh/MeshListener.cs).
            var meshSocket = Mesh.MeshListener.SocketPath(options.DataDir);
            File.Delete(meshSocket); // left by a previous run
            kestrel.ListenUnixSocket(meshSocket, listen =>
            {
                listen.Protocols = HttpProtocols.Http1;
                listen.Use(Mesh.MeshListener.ReadPreamble);
            });
            // Direct wires from nodes of the same site (Mesh/MeshPeers.cs): TLS with node certificates both ways.
            if (Mesh.MeshPeers.ListenEndpoint(options, endpoint) is { } peerEndpoint)
            {
                kestrel.Listen(peerEndpoint, listen =>
                {
                    listen.Protocols = HttpProtocols.Http1;
                    var services = listen.ApplicationServices;
                    var credentials = services.GetRequiredService<NodeCredentials>();
                    var peers = services.GetRequiredService<Mesh.MeshPeers>();
                    listen.UseHttps(new Microsoft.AspNetCore.Server.Kestrel.Https.HttpsConnectionAdapterOptions
                    {
                        // The node's current certificate: none before it joins (the handshake fails), the new one after a renewal.
                        ServerCertificateSelector = (_, _) => credentials.Current,
                        // Allowed rather than required, so a peer with none reaches Accept, which refuses and counts it.
                        ClientCertificateMode = Microsoft.AspNetCore.Server.Kestrel.Https.ClientCertificateMode.AllowCertificate,
                        ClientCertificateValidation = (certificate, chain, _) => peers.ValidateClient(certificate, chain),
                        HandshakeTimeout = Mesh.MeshPeers.ConnectTimeout * 5,
                    });
                    // Resolved at a peer's first wire: the mesh client needs the apps, which load as Kestrel starts.
                    listen.Use(next => peers.Accept(next, (peer, service) => services.GetRequiredService<Mesh.MeshClient>().ServingApp(peer, service)));
                });
            }

            kestrel.Limits.MaxRequestBodySize = options.MaxRequestBodyBytes;
        });

        var services = builder.Services;
        services.AddSingleton(options);
        services.AddSingleton(usage);
        services.AddSingleton(_ => stores.GetAwaiter().GetResult().Logs);
        services.AddSingleton(TimeProvider.System);
        services.AddSingleton(_ => stores.GetAwaiter().GetResult().Desired);
        services.AddSingleton(_ => new ModuleCache(Path.Combine(options.DataDir, "modules")));
        services.AddSingleton(_ => wasmHost.GetAwaiter().GetResult());
        services.AddSingleton(_ => stores.GetAwaiter().GetResult().Data);
        services.AddSingleton(_ => stores.GetAwaiter().GetResult().Secrets);
        // Closed loggers for the agent's own types: resolving the open ILogger<> makes each generic
        // type at run time, which NativeAOT's type loader does slowly (measured: ~15 ms of start CPU
        // went to open generics).
        AddLogger<Host.AgentHostServices>(services);
        AddLogger<AppRegistry>(services);
        AddLogger<GatewayHandler>(services);
        AddLogger<OutpostAgent>(services);
        AddLogger<ServerTrust>(services);
        AddLogger<SyncClient>(services);
        AddLogger<Triggers.TriggerScheduler>(services);
        AddLogger<Mesh.NodeWires>(services);
        AddLogger<Mesh.MeshClient>(services);
        services.AddSingleton(sp => new Host.AgentHostServices(sp.GetRequiredService<LocalDataStore>(), sp.GetRequiredService<Core.Security.SecretBox>(),
            sp.GetRequiredService<Monitoring.LogRing>(), sp, sp.GetRequiredService<ILogger<Host.AgentHostServices>>()));
        services.AddSingleton(sp =>
        {
            // The local stores open (SQLite) while Wasmtime is still starting; the engine is waited for last.
            var store = sp.GetRequiredService<AgentStore>();
            var host = sp.GetRequiredService<Host.AgentHostServices>();
            var modules = sp.GetRequiredService<ModuleCache>();
            return new AppRegistry(sp.GetRequiredService<WasmHost>(), modules, options.NodeName, host, sp.GetRequiredService<ILogger<AppRegistry>>(), store,
                containers: sp.GetRequiredService<AgentRuntimes>().ContainerRuntime, storage: new AppStorage(options.DataDir));
        });
        services.AddSingleton(sp =>
        {
            if (!OperatingSystem.IsLinux())
            {
                return new AgentRuntimes();
            }

            var containers = new ContainerAppRuntime(options.DataDir, options.NodeName, sp.GetRequiredService<Monitoring.LogRing>(), sp.GetRequiredService<ILoggerFactory>().CreateLogger("Outpost.Agent.Apps.ContainerAppRuntime"));
            return new AgentRuntimes { Containers = containers, ContainerRuntime = containers };
        });
        // Every service of the agent's own is made by a factory written here, not by the container
        // from its constructor: NativeAOT's container calls a constructor through reflection, and
        // the metadata lookups that needs were a tenth of the release agent's start (perf).
        services.AddSingleton(sp => new WagiRunner(sp.GetRequiredService<WasmHost>()));
        services.AddSingleton(sp => new Wasm.Events.EventRunner(sp.GetRequiredService<WasmHost>()));
        services.AddSingleton(_ => new GuestThreads());
        services.AddSingleton(sp => new Triggers.TriggerScheduler(sp.GetRequiredService<AppRegistry>(), sp.GetRequiredService<Wasm.Events.EventRunner>(),
            sp.GetRequiredService<Host.AgentHostServices>(), sp.GetRequiredService<LocalDataStore>(), sp.GetRequiredService<GuestThreads>(),
            sp.GetRequiredService<ILogger<Triggers.TriggerScheduler>>()));
        services.AddSingleton(sp => new Monitoring.AgentMetrics(sp.GetRequiredService<AppRegistry>(), usage, sp.GetRequiredService<LocalDataStore>(),
            sp.GetRequiredService<SyncClient>(), sp.GetRequiredService<AgentStore>(), options, sp.GetRequiredService<Mesh.NodeWires>(),
            sp.GetRequiredService<Mesh.MeshClient>(), sp.GetRequiredService<Mesh.MeshPeers>(), sp.GetRequiredService<WasmHost>(),
            sp.GetRequiredService<AgentRuntimes>(), sp.GetRequiredService<Monitoring.MemoryTrim>()));
        services.AddSingleton(sp => new Monitoring.MemoryTrim(sp.GetRequiredService<AppRegistry>(), sp.GetRequiredService<TimeProvider>()));
        services.AddSingleton(sp => new GatewayHandler(sp.GetRequiredService<AppRegistry>(), sp.GetRequiredService<WagiRunner>(), sp.GetRequiredService<GuestThreads>(),
            sp.GetRequiredService<Triggers.TriggerScheduler>(), sp.GetRequiredService<SyncClient>(), sp.GetRequiredService<AgentStore>(),
            sp.GetRequiredService<LocalDataStore>(), sp.GetRequiredService<Host.AgentHostServices>(), sp.GetRequiredService<Monitoring.AgentMetrics>(),
            sp.GetRequiredService<Monitoring.LogRing>(), options, sp.GetRequiredService<ILogger<GatewayHandler>>()));
        services.AddSingleton(_ => new GatewayInfo());
        services.AddSingleton(sp => new AgentLifetime(sp.GetRequiredService<IHostApplicationLifetime>()));
        services.AddSingleton(sp => new ServerTrust(options, sp.GetRequiredService<ILogger<ServerTrust>>()));
        services.AddSingleton(_ => new NodeCredentials(options));
        services.AddSingleton(sp => new Mesh.NodeWires(options, sp.GetRequiredService<Mesh.MeshClient>(), sp.GetRequiredService<Mesh.WireTransport>(),
            sp.GetRequiredService<ILogger<Mesh.NodeWires>>()));
        services.AddSingleton(_ => new Mesh.WireTransport());
        services.AddSingleton<Microsoft.AspNetCore.Connections.IConnectionListenerFactory>(sp => sp.GetRequiredService<Mesh.WireTransport>());
        services.AddSingleton(sp => new Mesh.MeshPeers(options, sp.GetRequiredService<NodeCredentials>(), sp.GetRequiredService<ILogger<Mesh.MeshPeers>>()));
        services.AddSingleton(sp => new Mesh.HttpOutClient(sp.GetRequiredService<Mesh.MeshClient>(), sp.GetRequiredService<ILogger<Mesh.HttpOutClient>>()));
        AddLogger<Mesh.HttpOutClient>(services);
        AddLogger<Mesh.MeshPeers>(services);
        services.AddSingleton(sp => new Mesh.MeshClient(options, sp.GetRequiredService<AppRegistry>(), sp.GetRequiredService<Mesh.MeshPeers>(),
            sp.GetRequiredService<ILogger<Mesh.MeshClient>>()));
        services.AddHostedService(sp => new AfterLocalState<Mesh.MeshClient>(localState, () => sp.GetRequiredService<Mesh.MeshClient>()));
        services.AddSingleton(sp => new SyncClient(options, sp.GetRequiredService<AgentStore>(), sp.GetRequiredService<LocalDataStore>(),
            sp.GetRequiredService<ModuleCache>(), sp.GetRequiredService<AppRegistry>(), sp.GetRequiredService<Host.AgentHostServices>(),
            sp.GetRequiredService<GatewayInfo>(), sp.GetRequiredService<ServerTrust>(), sp.GetRequiredService<NodeCredentials>(),
            sp.GetRequiredService<Core.Security.SecretBox>(), sp.GetRequiredService<AgentLifetime>(), usage, sp.GetRequiredService<Monitoring.LogRing>(),
            sp.GetRequiredService<Mesh.NodeWires>(), sp.GetRequiredService<Mesh.MeshClient>(), sp.GetRequiredService<Mesh.MeshPeers>(),
            sp.GetRequiredService<TimeProvider>(), sp.GetRequiredService<ILogger<SyncClient>>(), sp.GetRequiredService<AgentRuntimes>()));
        services.AddHostedService(sp => new AfterLocalState<SyncClient>(localState, () => sp.GetRequiredService<SyncClient>()));

        // The web host's startup filters add host filtering and forwarded-headers middleware; the
        // gateway is one handler that uses neither, and each filter's options were made through
        // reflection at every start.
        services.RemoveAll<IStartupFilter>();

        var app = builder.Build();
        // The web host's own services (Kestrel and its options, the lifetime) are made on a second
        // core while this thread makes the agent's and loads local state: under NativeAOT the
        // container makes each through reflection, a third of the time to serve. An
        // error here is met again, and reported, where the host resolves the same service.
        _ = Task.Run(() =>
        {
            _ = app.Services.GetRequiredService<IServer>();
            _ = app.Services.GetRequiredService<IHostLifetime>();
        }).ContinueWith(static t => _ = t.Exception, CancellationToken.None, TaskContinuationOptions.OnlyOnFaulted, TaskScheduler.Default);
        // The gateway listens as soon as Kestrel has started; a request that comes before the
        // apps have loaded from local state waits for them (StartAsync loads them meanwhile).
        app.Run(localState.HandleAsync);
        return new OutpostAgent(app, stores, localState);
    }

    /// <summary>How this executable runs `outpost wasm compile`, or null to compile in process.</summary>
    internal static IReadOnlyList<string>? CompilerCommand(bool? inChild)
    {
        var native = !System.Runtime.CompilerServices.RuntimeFeature.IsDynamicCodeSupported;
        if (!(inChild ?? native) || Environment.ProcessPath is not { } executable)
        {
            return null;
        }

        if (native)
        {
            return [executable];
        }

        // The JIT build runs as `dotnet outpost.dll`; an agent hosted by anything else (a test host) compiles in process.
        var entry = Environment.GetCommandLineArgs()[0];
        return Path.GetFileName(entry) == "outpost.dll" ? [executable, entry] : null;
    }

    private static void AddLogger<T>(IServiceCollection services) =>
        services.AddSingleton<ILogger<T>>(sp => new Logger<T>(sp.GetRequiredService<ILoggerFactory>()));

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        // Serve what was last acked before talking to anyone: the apps load from local state on
        // a second core while this thread starts Kestrel; the sync and mesh clients start after them.
        var load = Task.Run(LoadLocalState, CancellationToken.None);
        var info = _app.Services.GetRequiredService<GatewayInfo>();
        _app.Lifetime.ApplicationStarted.Register(() =>
            info.Url = _app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First(a => a.StartsWith("http://", StringComparison.Ordinal)));
        try
        {
            await _app.StartAsync(cancellationToken);
        }
        finally
        {
            // A failed load is the error to report, rather than the host's echo of it.
            await load;
        }

        var addresses = _app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses;
        info.Url = addresses.First(a => a.StartsWith("http://", StringComparison.Ordinal));
        var peerUrl = addresses.FirstOrDefault(a => a.StartsWith("https://", StringComparison.Ordinal));
        _app.Services.GetRequiredService<Mesh.MeshPeers>().SetBound(peerUrl is null ? null : System.Net.IPEndPoint.Parse(new Uri(peerUrl).Authority));
    }

    public Task WaitForShutdownAsync(CancellationToken cancellationToken) => _app.WaitForShutdownAsync(cancellationToken);

    public Task StopAsync(CancellationToken cancellationToken) => _app.StopAsync(cancellationToken);

    private void LoadLocalState()
    {
        try
        {
            var started = System.Diagnostics.Stopwatch.GetTimestamp();
            var store = _app.Services.GetRequiredService<AgentStore>();
            var registry = _app.Services.GetRequiredService<AppRegistry>();
            registry.Reconcile(store.LoadDesired());
            var elapsed = System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalMilliseconds;
            var loaded = registry.Loaded;
            var fromCache = loaded.Count(a => a.Instance is WasmAppInstance { Module.FromCache: true });
            var logger = _app.Services.GetRequiredService<ILogger<OutpostAgent>>();
            LogLocalStateLoaded(logger, loaded.Count, elapsed, fromCache);
            var handler = _app.Services.GetRequiredService<GatewayHandler>();
            _ = _app.Services.GetRequiredService<Triggers.TriggerScheduler>(); // timers start with the agent
            _ = _app.Services.GetRequiredService<Monitoring.MemoryTrim>();
            _localState.Loaded(handler);
        }
        catch (Exception ex)
        {
            _localState.Failed(ex);
            throw;
        }
    }

    public async ValueTask DisposeAsync()
    {
        _localState.Abandoned();
        var runtimes = _app.Services.GetRequiredService<AgentRuntimes>();
        await _app.DisposeAsync(); // the registry lets go of its apps: their containers stop
        if (_stores.IsCompletedSuccessfully)
        {
            _stores.Result.Dispose(); // the container disposed those it made; an agent that never started made none
        }

        if (OperatingSystem.IsLinux() && runtimes.Containers is { } containers)
        {
            await containers.DisposeAsync();
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Serving {Apps} apps from local state, loaded in {Milliseconds:F1} ms ({Cached} from the precompiled cache)")]
    private static partial void LogLocalStateLoaded(ILogger logger, int apps, double milliseconds, int cached);
}
