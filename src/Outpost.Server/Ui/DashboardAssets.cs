using System.IO.Compression;
using System.Reflection;
using System.Security.Cryptography;
using Microsoft.AspNetCore.Http;

namespace Outpost.Server.Ui;

/// <summary>
/// The dashboard's files, embedded in the server assembly (the fleet may be air-gapped: nothing
/// comes from a CDN), each held as is and compressed with Brotli and gzip once, on first use.
/// </summary>
internal sealed class DashboardAssets
{
    private const string ResourcePrefix = "ui/";

    private static readonly Lazy<DashboardAssets> Embedded = new(() => Load(typeof(DashboardAssets).Assembly));

    private readonly Dictionary<string, Asset> _assets;

    private DashboardAssets(Dictionary<string, Asset> assets) => _assets = assets;

    /// <summary>The files of this build.</summary>
    public static DashboardAssets Current => Embedded.Value;

    public IReadOnlyCollection<string> Paths => _assets.Keys;

    public bool TryGet(string path, out Asset asset) => _assets.TryGetValue(path, out asset!);

    internal static DashboardAssets Load(Assembly assembly)
    {
        var assets = new Dictionary<string, Asset>(StringComparer.Ordinal);
        foreach (var name in assembly.GetManifestResourceNames().Where(n => n.StartsWith(ResourcePrefix, StringComparison.Ordinal)))
        {
            using var stream = assembly.GetManifestResourceStream(name)!;
            using var buffer = new MemoryStream();
            stream.CopyTo(buffer);
            var path = name[ResourcePrefix.Length..].Replace('\\', '/');
            assets[path] = Asset.Create(path, buffer.ToArray());
        }

        return new DashboardAssets(assets);
    }

    /// <summary>One file: its bytes as is, Brotli and gzip, and the ETag of its content.</summary>
    internal sealed record Asset(string ContentType, byte[] Identity, byte[] Brotli, byte[] Gzip, string ETag)
    {
        public static Asset Create(string path, byte[] content)
        {
            var type = ContentTypeOf(path);
            var text = !type.StartsWith("image/png", StringComparison.Ordinal);
            return new Asset(type, content,
                text ? Compress(content, s => new BrotliStream(s, CompressionLevel.SmallestSize)) : content,
                text ? Compress(content, s => new GZipStream(s, CompressionLevel.SmallestSize)) : content,
                "\"" + Convert.ToHexStringLower(SHA256.HashData(content))[..20] + "\"");
        }

        /// <summary>The encoding to send for an Accept-Encoding header, and its bytes.</summary>
        public (string? Encoding, byte[] Body) For(string acceptEncoding) =>
            Accepts(acceptEncoding, "br") && Brotli.Length < Identity.Length ? ("br", Brotli)
            : Accepts(acceptEncoding, "gzip") && Gzip.Length < Identity.Length ? ("gzip", Gzip)
            : (null, Identity);

        private static bool Accepts(string header, string coding) =>
            header.Split(',').Select(p => p.Split(';')).Any(p => p[0].Trim().Equals(coding, StringComparison.OrdinalIgnoreCase)
                && !(p.Length > 1 && p[1].Trim().Replace(" ", "", StringComparison.Ordinal) is "q=0" or "q=0.0" or "q=0.00" or "q=0.000"));

        private static byte[] Compress(byte[] content, Func<Stream, Stream> wrap)
        {
            using var output = new MemoryStream();
            using (var compressor = wrap(output))
            {
                compressor.Write(content);
            }

            return output.ToArray();
        }
    }

    internal static string ContentTypeOf(string path) => Path.GetExtension(path) switch
    {
        ".html" => "text/html; charset=utf-8",
        ".js" => "text/javascript; charset=utf-8",
        ".css" => "text/css; charset=utf-8",
        ".svg" => "image/svg+xml",
        ".json" => "application/json",
        ".png" => "image/png",
        _ => "application/octet-stream",
    };

    /// <summary>Writes the file, or 304 when the browser holds this version already.</summary>
    public static Task WriteAsync(HttpContext context, Asset asset)
    {
        var headers = context.Response.Headers;
        headers.ETag = asset.ETag;
        // Revalidated on every load (a 304 is a few bytes): an upgraded server never serves yesterday's script.
        headers.CacheControl = "no-cache";
        headers.Vary = "Accept-Encoding";
        if (context.Request.Headers.IfNoneMatch.ToString() == asset.ETag)
        {
            context.Response.StatusCode = StatusCodes.Status304NotModified;
            return Task.CompletedTask;
        }

        var (encoding, body) = asset.For(context.Request.Headers.AcceptEncoding.ToString());
        if (encoding is not null)
        {
            headers.ContentEncoding = encoding;
        }

        context.Response.ContentType = asset.ContentType;
        context.Response.ContentLength = body.Length;
        return HttpMethods.IsHead(context.Request.Method) ? Task.CompletedTask : context.Response.Body.WriteAsync(body, context.RequestAborted).AsTask();
    }
}
