using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Outpost.Server.Ui;

/// <summary>
/// The web dashboard at /ui/ on the API's port: static files only. The pages read the fleet
/// through the same public API as the CLI and kubectl, with the API token the user signs in
/// with, so the dashboard can do exactly what that token's role may.
/// </summary>
public static class DashboardEndpoints
{
    public const string Prefix = "/ui/";

    /// <summary>
    /// Only the server's own files run: no inline script or style, no other origin, no framing.
    /// Text from the fleet is set as text by the scripts; this is the second line.
    /// </summary>
    public const string ContentSecurityPolicy =
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
        "manifest-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

    public static void MapDashboard(this IEndpointRouteBuilder app)
    {
        ArgumentNullException.ThrowIfNull(app);
        app.MapGet("/", () => Results.Redirect(Prefix));
        app.MapMethods(Prefix + "{**path}", [HttpMethods.Get, HttpMethods.Head], (string? path, HttpContext context) =>
        {
            if (!context.Request.Path.Value!.EndsWith('/') && string.IsNullOrEmpty(path))
            {
                // "/ui": the pages' relative links need the slash.
                context.Response.Redirect(Prefix);
                return Task.CompletedTask;
            }

            var headers = context.Response.Headers;
            headers.ContentSecurityPolicy = ContentSecurityPolicy;
            headers.XContentTypeOptions = "nosniff";
            headers.XFrameOptions = "DENY";
            headers["Referrer-Policy"] = "no-referrer";
            headers["Cross-Origin-Opener-Policy"] = "same-origin";
            if (!DashboardAssets.Current.TryGet(string.IsNullOrEmpty(path) ? "index.html" : path, out var asset))
            {
                context.Response.StatusCode = StatusCodes.Status404NotFound;
                return context.Response.WriteAsync($"no such dashboard file: {path}", context.RequestAborted);
            }

            return DashboardAssets.WriteAsync(context, asset);
        });
    }
}
