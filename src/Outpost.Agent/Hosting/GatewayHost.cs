using System.Net;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Abstractions;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace Outpost.Agent.Hosting;

/// <summary>
/// What Kestrel runs for each request of the gateway: an HTTP context (reused across the
/// requests of a connection, as the web host's own application does) handed to the gateway's entry.
/// </summary>
internal sealed class GatewayApplication(LocalState gateway) : IHttpApplication<HttpContext>
{
    public HttpContext CreateContext(IFeatureCollection contextFeatures)
    {
        if (contextFeatures is IHostContextContainer<HttpContext> container)
        {
            if (container.HostContext is DefaultHttpContext reused)
            {
                reused.Initialize(contextFeatures);
                return reused;
            }

            var made = new DefaultHttpContext(contextFeatures);
            container.HostContext = made;
            return made;
        }

        return new DefaultHttpContext(contextFeatures);
    }

    public Task ProcessRequestAsync(HttpContext context) => gateway.HandleAsync(context);

    public void DisposeContext(HttpContext context, Exception? exception)
    {
        if (context is DefaultHttpContext defaultContext)
        {
            defaultContext.Uninitialize();
        }
    }
}

/// <summary>Kestrel's listeners: in-process wires for the wire endpoint, sockets for everything else.</summary>
internal sealed class GatewayTransports(IConnectionListenerFactory sockets, Mesh.WireTransport wires) : IConnectionListenerFactory
{
    public ValueTask<IConnectionListener> BindAsync(EndPoint endpoint, CancellationToken cancellationToken = default) =>
        wires.CanBind(endpoint) ? wires.BindAsync(endpoint, cancellationToken) : sockets.BindAsync(endpoint, cancellationToken);
}

/// <summary>
/// Kestrel's own service registrations in the agent's container: its TLS listener asks the
/// container for Kestrel's metrics, which only Kestrel can register. <c>UseKestrelCore</c> is
/// written against a web host builder; this one passes the services through and has nothing else.
/// </summary>
internal sealed class KestrelServices(IServiceCollection services) : IWebHostBuilder
{
    public void UseKestrelCore() => WebHostBuilderKestrelExtensions.UseKestrelCore(this);

    public IWebHostBuilder ConfigureServices(Action<IServiceCollection> configureServices)
    {
        ArgumentNullException.ThrowIfNull(configureServices);
        configureServices(services);
        return this;
    }

    public IWebHostBuilder ConfigureServices(Action<WebHostBuilderContext, IServiceCollection> configureServices) =>
        throw new NotSupportedException("the agent's container takes Kestrel's services without a web host context");

    public IWebHostBuilder ConfigureAppConfiguration(Action<WebHostBuilderContext, IConfigurationBuilder> configureDelegate) =>
        throw new NotSupportedException("the agent's gateway reads no configuration");

#pragma warning disable ASPDEPR008 // IWebHostBuilder still declares it
    public IWebHost Build() => throw new NotSupportedException("the agent's gateway is Kestrel alone, not a web host");
#pragma warning restore ASPDEPR008

    public string? GetSetting(string key) => null;

    public IWebHostBuilder UseSetting(string key, string? value) =>
        throw new NotSupportedException($"the agent's gateway takes no web host setting ({key})");
}

/// <summary>The agent's lifetime: started, stopping (asked by a fatal error or by a stop) and stopped.</summary>
internal sealed class AgentHostLifetime : IHostApplicationLifetime, IDisposable
{
    private readonly CancellationTokenSource _started = new();
    private readonly CancellationTokenSource _stopping = new();
    private readonly CancellationTokenSource _stopped = new();

    public CancellationToken ApplicationStarted => _started.Token;

    public CancellationToken ApplicationStopping => _stopping.Token;

    public CancellationToken ApplicationStopped => _stopped.Token;

    public void StopApplication() => Fire(_stopping);

    public void Started() => Fire(_started);

    public void Stopped() => Fire(_stopped);

    public void Dispose()
    {
        _started.Dispose();
        _stopping.Dispose();
        _stopped.Dispose();
    }

    private static void Fire(CancellationTokenSource source)
    {
        try
        {
            source.Cancel();
        }
        catch (ObjectDisposedException)
        {
            // The agent is gone already.
        }
    }
}
