using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Server.Kestrel.Transport.Sockets;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Outpost.Agent.Apps;
using Outpost.Agent.Gateway;
using Outpost.Agent.State;
using Outpost.Agent.Sync;
using Outpost.Wasm.Hosting;
using Outpost.Wasm.Wagi;

namespace Outpost.Agent.Hosting;

/// <summary>
/// The edge agent process: local state first (so apps serve even with the server down),
/// then the gateway, then the sync loop in the background. The gateway is Kestrel on its own
/// and the agent's services live in a container of their own: no generic host, whose building
/// and starting (configuration, options, hosted-service plumbing, reflection over its start-up
/// delegates) was a fifth of the release agent's start.
/// </summary>
public sealed partial class OutpostAgent : IAsyncDisposable
{
    /// <summary>How long the background services and Kestrel get to stop (the generic host's default).</summary>
    private static readonly TimeSpan ShutdownTimeout = TimeSpan.FromSeconds(30);

    private readonly ServiceProvider _services;
    private readonly KestrelServer _server;
    private readonly AgentHostLifetime _lifetime;
    private readonly Task<LocalStores> _stores;
    private readonly LocalState _localState;
    private readonly List<IHostedService> _running = [];
    private readonly Lock _stopGate = new();
    private Task? _stopped;

    private OutpostAgent(ServiceProvider services, KestrelServer server, AgentHostLifetime lifetime, Task<LocalStores> stores, LocalState localState)
    {
        _services = services;
        _server = server;
        _lifetime = lifetime;
        _stores = stores;
        _localState = localState;
    }

    /// <summary>The gateway's URL, known once started.</summary>
    public string GatewayUrl => _services.GetRequiredService<GatewayInfo>().Url;

    /// <summary>Why the agent stopped on its own, if it did.</summary>
    public string? FatalError => _services.GetRequiredService<AgentLifetime>().FatalError;

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
        // The node's SQLite stores open on a second core while this thread sets up the gateway.
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
        var lifetime = new AgentHostLifetime();
        var services = new ServiceCollection();
        // The console logger's single-line form (Monitoring/ConsoleLineLogger.cs) and the node's
        // log ring; the framework's own lines from warnings up.
        services.AddSingleton<ILoggerFactory>(_ => new LoggerFactory(
            [new Monitoring.ConsoleLineLoggerProvider(), new Monitoring.RingLoggerProvider(() => stores.GetAwaiter().GetResult().Logs)],
            new LoggerFilterOptions
            {
                MinLevel = LogLevel.Information,
                Rules =
                {
                    new LoggerFilterRule(null, "Microsoft", LogLevel.Warning, null),
                    new LoggerFilterRule(null, "Grpc", LogLevel.Warning, null),
                    new LoggerFilterRule(null, "System.Net.Http", LogLevel.Warning, null),
                },
            }));
        services.AddSingleton<IHostApplicationLifetime>(lifetime);
        // What Kestrel's TLS listener asks the container for (its metrics), registered as the web host would.
        services.AddMetrics();
        new KestrelServices(services).UseKestrelCore();

        var usage = new Monitoring.NodeUsageProbe(options.DataDir);
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
        services.AddSingleton(sp => new Mesh.MeshPeers(options, sp.GetRequiredService<NodeCredentials>(), sp.GetRequiredService<ILogger<Mesh.MeshPeers>>()));
        services.AddSingleton(sp => new Mesh.HttpOutClient(sp.GetRequiredService<Mesh.MeshClient>(), sp.GetRequiredService<ILogger<Mesh.HttpOutClient>>()));
        AddLogger<Mesh.HttpOutClient>(services);
        AddLogger<Mesh.MeshPeers>(services);
        services.AddSingleton(sp => new Mesh.MeshClient(options, sp.GetRequiredService<AppRegistry>(), sp.GetRequiredService<Mesh.MeshPeers>(),
            sp.GetRequiredService<ILogger<Mesh.MeshClient>>()));
        services.AddSingleton(sp => new SyncClient(options, sp.GetRequiredService<AgentStore>(), sp.GetRequiredService<LocalDataStore>(),
            sp.GetRequiredService<ModuleCache>(), sp.GetRequiredService<AppRegistry>(), sp.GetRequiredService<Host.AgentHostServices>(),
            sp.GetRequiredService<GatewayInfo>(), sp.GetRequiredService<ServerTrust>(), sp.GetRequiredService<NodeCredentials>(),
            sp.GetRequiredService<Core.Security.SecretBox>(), sp.GetRequiredService<AgentLifetime>(), usage, sp.GetRequiredService<Monitoring.LogRing>(),
            sp.GetRequiredService<Mesh.NodeWires>(), sp.GetRequiredService<Mesh.MeshClient>(), sp.GetRequiredService<Mesh.MeshPeers>(),
            sp.GetRequiredService<TimeProvider>(), sp.GetRequiredService<ILogger<SyncClient>>(), sp.GetRequiredService<AgentRuntimes>()));

        var provider = services.BuildServiceProvider();
        try
        {
            return new OutpostAgent(provider, Gateway(options, endpoint, usage, provider), lifetime, stores, localState);
        }
        catch
        {
            provider.Dispose();
            throw;
        }
    }

    /// <summary>Kestrel for the gateway, the relayed wires, the node's mesh socket and, when on, the direct wires of peers.</summary>
    private static KestrelServer Gateway(AgentOptions options, System.Net.IPEndPoint endpoint, Monitoring.NodeUsageProbe usage, ServiceProvider services)
    {
        var kestrel = new KestrelServerOptions { AddServerHeader = false, ApplicationServices = services };
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
                // A wire waiting on its ends holds no OpenSSL record buffers (the dialling side does the same).
                listen.Use(next => connection =>
                {
                    Core.Net.TlsIdleBuffers.Release(connection.Features.Get<Microsoft.AspNetCore.Server.Kestrel.Core.Features.ISslStreamFeature>()?.SslStream);
                    return next(connection);
                });
                // Resolved at a peer's first wire: the mesh client needs the apps, which load as Kestrel starts.
                listen.Use(next => peers.Accept(next, (peer, service) => services.GetRequiredService<Mesh.MeshClient>().ServingApp(peer, service)));
            });
        }

        kestrel.Limits.MaxRequestBodySize = options.MaxRequestBodyBytes;

        var loggers = services.GetRequiredService<ILoggerFactory>();
        // A burst of wires connects to the mesh socket all at once: a backlog of 512 (the default)
        // would turn most of them away (a Unix socket refuses at once when its backlog is full).
        var sockets = new SocketTransportFactory(Options.Create(new SocketTransportOptions { Backlog = 4096 }), loggers);
        return new KestrelServer(Options.Create(kestrel), new GatewayTransports(sockets, services.GetRequiredService<Mesh.WireTransport>()), loggers);
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
        try
        {
            await _server.StartAsync(new GatewayApplication(_localState), cancellationToken);
        }
        finally
        {
            // A failed load is the error to report, rather than Kestrel's.
            await load;
        }

        var addresses = _server.Features.Get<IServerAddressesFeature>()!.Addresses;
        _services.GetRequiredService<GatewayInfo>().Url = addresses.First(a => a.StartsWith("http://", StringComparison.Ordinal));
        var peerUrl = addresses.FirstOrDefault(a => a.StartsWith("https://", StringComparison.Ordinal));
        _services.GetRequiredService<Mesh.MeshPeers>().SetBound(peerUrl is null ? null : System.Net.IPEndPoint.Parse(new Uri(peerUrl).Authority));
        foreach (var service in new IHostedService[] { _services.GetRequiredService<Mesh.MeshClient>(), _services.GetRequiredService<SyncClient>() })
        {
            await service.StartAsync(cancellationToken);
            _running.Add(service);
        }

        _lifetime.Started();
    }

    /// <summary>Completes once the agent has stopped, on its own (a fatal error) or by <see cref="StopAsync"/>.</summary>
    public async Task WaitForShutdownAsync(CancellationToken cancellationToken)
    {
        var stopping = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using (_lifetime.ApplicationStopping.Register(() => stopping.TrySetResult()))
        {
            await stopping.Task.WaitAsync(cancellationToken);
        }

        await StopAsync(CancellationToken.None);
    }

    /// <summary>Stops the background services (the last started first), then Kestrel; once, however often called.</summary>
    public Task StopAsync(CancellationToken cancellationToken)
    {
        lock (_stopGate)
        {
            return _stopped ??= StopCoreAsync(cancellationToken);
        }
    }

    private async Task StopCoreAsync(CancellationToken cancellationToken)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(ShutdownTimeout);
        _lifetime.StopApplication();
        var failures = new List<Exception>();
        for (var i = _running.Count - 1; i >= 0; i--)
        {
            try
            {
                await _running[i].StopAsync(timeout.Token);
            }
            catch (Exception ex)
            {
                failures.Add(ex);
            }
        }

        await _server.StopAsync(timeout.Token);
        _lifetime.Stopped();
        if (failures.Count > 0)
        {
            throw new AggregateException("the agent's background services did not stop cleanly", failures);
        }
    }

    private void LoadLocalState()
    {
        try
        {
            var started = System.Diagnostics.Stopwatch.GetTimestamp();
            var store = _services.GetRequiredService<AgentStore>();
            var registry = _services.GetRequiredService<AppRegistry>();
            registry.Reconcile(store.LoadDesired());
            var elapsed = System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalMilliseconds;
            var loaded = registry.Loaded;
            var fromCache = loaded.Count(a => a.Instance is WasmAppInstance { Module.FromCache: true });
            var logger = _services.GetRequiredService<ILogger<OutpostAgent>>();
            LogLocalStateLoaded(logger, loaded.Count, elapsed, fromCache);
            var handler = _services.GetRequiredService<GatewayHandler>();
            _ = _services.GetRequiredService<Triggers.TriggerScheduler>(); // timers start with the agent
            _ = _services.GetRequiredService<Monitoring.MemoryTrim>();
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
        var runtimes = _services.GetRequiredService<AgentRuntimes>();
        _server.Dispose();
        await _services.DisposeAsync(); // the registry lets go of its apps: their containers stop
        _lifetime.Dispose();
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
