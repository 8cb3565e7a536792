using System.Collections.Concurrent;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Outpost.IntegrationTests;

/// <summary>A real HTTP receiver for alert webhooks on 127.0.0.1, recording every POST; it can refuse the first few.</summary>
internal sealed class WebhookReceiver : IAsyncDisposable
{
    private readonly WebApplication _app;
    private int _refuse;

    private WebhookReceiver(WebApplication app) => _app = app;

    /// <summary>Every notification received with a 2xx answer, in arrival order.</summary>
    public ConcurrentQueue<JsonObject> Accepted { get; } = new();

    /// <summary>Attempts answered 500 on purpose.</summary>
    public int Refused { get; private set; }

    public string Url { get; private set; } = "";

    public static async Task<WebhookReceiver> StartAsync(int refuseFirst = 0)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k => k.Listen(System.Net.IPAddress.Loopback, 0));
        var app = builder.Build();
        var receiver = new WebhookReceiver(app) { _refuse = refuseFirst };
        app.MapPost("/hook", async (HttpContext context) =>
        {
            var body = JsonNode.Parse(await new StreamReader(context.Request.Body).ReadToEndAsync())!.AsObject();
            if (Interlocked.Decrement(ref receiver._refuse) >= 0)
            {
                receiver.Refused++;
                return Results.StatusCode(500);
            }

            receiver.Accepted.Enqueue(body);
            return Results.Ok();
        });
        await app.StartAsync();
        receiver.Url = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First() + "/hook";
        return receiver;
    }

    /// <summary>Waits for a notification with this status about this target.</summary>
    public async Task<JsonObject> WaitForAsync(string status, string target, TimeSpan timeout)
    {
        JsonObject? Find() => Accepted.FirstOrDefault(n => (string?)n["status"] == status && $"{n["target"]?["kind"]}/{n["target"]?["name"]}" == target);
        await Eventually.UntilAsync(() => Find() is not null, found => found, timeout, $"a '{status}' notification for {target}",
            _ => $"{Accepted.Count} received: " + string.Join(", ", Accepted.Select(n => $"{n["status"]} {n["target"]?["name"]}")));
        return Find()!;
    }

    public async ValueTask DisposeAsync() => await _app.DisposeAsync();
}
