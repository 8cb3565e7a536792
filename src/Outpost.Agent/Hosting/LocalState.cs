using Microsoft.AspNetCore.Http;
using Outpost.Agent.Gateway;
using Outpost.Agent.State;

namespace Outpost.Agent.Hosting;

/// <summary>
/// The gateway's entry while the agent starts: Kestrel listens before the apps have loaded from
/// local state, and a request that comes in between waits here for them rather than being
/// refused. Once they have loaded, requests go straight to the gateway handler.
/// </summary>
internal sealed class LocalState
{
    private readonly TaskCompletionSource<GatewayHandler> _loaded = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public void Loaded(GatewayHandler handler) => _loaded.TrySetResult(handler);

    public void Failed(Exception error) => _loaded.TrySetException(error);

    public void Abandoned() => _loaded.TrySetCanceled();

    public Task HandleAsync(HttpContext context) =>
        _loaded.Task.IsCompletedSuccessfully ? _loaded.Task.Result.HandleAsync(context) : WaitThenHandleAsync(context);

    private async Task WaitThenHandleAsync(HttpContext context)
    {
        GatewayHandler handler;
        try
        {
            handler = await _loaded.Task.WaitAsync(context.RequestAborted);
        }
        catch (Exception) when (!context.RequestAborted.IsCancellationRequested)
        {
            context.Response.StatusCode = StatusCodes.Status503ServiceUnavailable;
            await context.Response.WriteAsync("the agent could not load its apps from local state; it is stopping\n");
            return;
        }

        await handler.HandleAsync(context);
    }
}

/// <summary>The node's local stores, opened together at start (on a second core, while the gateway is set up).</summary>
internal sealed class LocalStores(Monitoring.LogRing logs, AgentStore desired, LocalDataStore data, Core.Security.SecretBox secrets) : IDisposable
{
    public Monitoring.LogRing Logs { get; } = logs;

    public AgentStore Desired { get; } = desired;

    public LocalDataStore Data { get; } = data;

    public Core.Security.SecretBox Secrets { get; } = secrets;

    public static LocalStores Open(AgentOptions options)
    {
        var opened = new List<IDisposable>();
        try
        {
            var logs = Keep(opened, new Monitoring.LogRing(Path.Combine(options.DataDir, "logs.db"), options.LogQuotaBytes));
            var desired = Keep(opened, new AgentStore(Path.Combine(options.DataDir, "agent.db")));
            var data = Keep(opened, new LocalDataStore(Path.Combine(options.DataDir, "data.db"), TimeProvider.System, options.OutboxQuotaBytes, options.OutboxOverflow, options.NodeName));
            var secrets = Core.Security.SecretBox.LoadOrCreate(Path.Combine(options.DataDir, "secrets.key"));
            return new LocalStores(logs, desired, data, secrets);
        }
        catch
        {
            foreach (var store in opened)
            {
                store.Dispose();
            }

            throw;
        }
    }

    public void Dispose()
    {
        Logs.Dispose();
        Desired.Dispose();
        Data.Dispose();
        Secrets.Dispose();
    }

    private static T Keep<T>(List<IDisposable> opened, T store)
        where T : IDisposable
    {
        opened.Add(store);
        return store;
    }
}
