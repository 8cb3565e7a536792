using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace Outpost.Bench;

/// <summary>The baseline for the gateway: Kestrel answering /hello with the same bytes, no Wasm.</summary>
internal static class PlainKestrel
{
    public static async Task RunAsync(int port)
    {
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { ContentRootPath = AppContext.BaseDirectory });
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.AddServerHeader = false;
            k.Listen(IPAddress.Loopback, port);
        });
        var app = builder.Build();
        var body = "hello from edge-1 (path /)\n"u8.ToArray();
        app.MapGet("/hello", async context =>
        {
            context.Response.ContentType = "text/plain; charset=utf-8";
            context.Response.ContentLength = body.Length;
            await context.Response.Body.WriteAsync(body);
        });
        Console.WriteLine($"kestrel: http://127.0.0.1:{port}");
        await app.RunAsync();
    }
}
