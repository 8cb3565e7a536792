using System.Globalization;
using System.Security.Cryptography;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Outpost.Containers.Images;
using Outpost.Core.Resources;
using Outpost.Core.Store;
using Outpost.Server.Hosting;

namespace Outpost.Server.Registry;

/// <summary>
/// The OCI distribution API (<c>/v2/</c>) over the server's blob store, so that skopeo, podman
/// and docker push images to the server itself and nodes take them from there: blob uploads
/// monolithic or in chunks (sessions kept in the data dir until finished), cross-repository
/// mounts, manifests by tag and digest (checked: parsed, and every blob they name present),
/// tag lists and the catalog. Blobs are one content-addressed store with the modules'; a
/// repository is a namespace for tags. API tokens authenticate (Bearer, or as the password of
/// Basic auth, as docker login sends it); pushing needs the admin role.
/// </summary>
public static partial class RegistryEndpoints
{
    /// <summary>The largest blob (a layer) the registry takes: it passes through memory on its way to the store.</summary>
    public const long MaxBlobBytes = 512L * 1024 * 1024;

    /// <summary>The largest manifest or index.</summary>
    public const int MaxManifestBytes = 4 * 1024 * 1024;

    private const string UploadsPath = "/blobs/uploads";
    private static readonly TimeSpan UploadLifetime = TimeSpan.FromHours(24);

    public static void MapRegistry(this IEndpointRouteBuilder app)
    {
        ArgumentNullException.ThrowIfNull(app);
        app.Map("/v2", HandleAsync);
        app.Map("/v2/{**rest}", HandleAsync);
    }

    /// <summary>An error as the distribution spec words them: <c>{"errors":[{"code","message"}]}</c>.</summary>
    public static Task ErrorAsync(HttpContext context, int status, string code, string message)
    {
        ArgumentNullException.ThrowIfNull(context);
        context.Response.StatusCode = status;
        context.Response.Headers["Docker-Distribution-API-Version"] = "registry/2.0";
        if (status == 401)
        {
            context.Response.Headers.WWWAuthenticate = "Basic realm=\"Outpost registry\"";
        }

        if (HttpMethods.IsHead(context.Request.Method))
        {
            return Task.CompletedTask;
        }

        context.Response.ContentType = "application/json";
        var body = new JsonObject { ["errors"] = new JsonArray(new JsonObject { ["code"] = code, ["message"] = message }) };
        return context.Response.WriteAsync(body.ToJsonString());
    }

    private static async Task HandleAsync(HttpContext context)
    {
        context.Response.Headers["Docker-Distribution-API-Version"] = "registry/2.0";
        var rest = ((string?)context.Request.RouteValues["rest"] ?? "").TrimEnd('/');
        var method = context.Request.Method;
        if (rest.Length == 0)
        {
            if (HttpMethods.IsGet(method) || HttpMethods.IsHead(method))
            {
                await WriteJsonAsync(context, 200, []);
                return;
            }
        }
        else if (rest == "_catalog")
        {
            await CatalogAsync(context);
            return;
        }
        else if (Split(rest, "/manifests/") is var (name, reference))
        {
            await (method switch
            {
                _ when !ValidName(name) => NameInvalidAsync(context, name),
                _ when HttpMethods.IsGet(method) || HttpMethods.IsHead(method) => GetManifestAsync(context, name, reference),
                _ when HttpMethods.IsPut(method) => PutManifestAsync(context, name, reference),
                _ when HttpMethods.IsDelete(method) => DeleteManifestAsync(context, name, reference),
                _ => UnsupportedAsync(context),
            });
            return;
        }
        else if (rest.EndsWith("/tags/list", StringComparison.Ordinal))
        {
            name = rest[..^"/tags/list".Length];
            await (ValidName(name) ? TagsAsync(context, name) : NameInvalidAsync(context, name));
            return;
        }
        else if (rest.EndsWith(UploadsPath, StringComparison.Ordinal) || rest.Contains(UploadsPath + "/", StringComparison.Ordinal))
        {
            var at = rest.LastIndexOf(UploadsPath, StringComparison.Ordinal);
            name = rest[..at];
            var session = rest[(at + UploadsPath.Length)..].TrimStart('/');
            await (method switch
            {
                _ when !ValidName(name) => NameInvalidAsync(context, name),
                _ when session.Length == 0 && HttpMethods.IsPost(method) => StartUploadAsync(context, name),
                _ when session.Length == 0 => UnsupportedAsync(context),
                _ when HttpMethods.IsPatch(method) => PatchUploadAsync(context, name, session),
                _ when HttpMethods.IsPut(method) => FinishUploadAsync(context, name, session),
                _ when HttpMethods.IsGet(method) => UploadStatusAsync(context, name, session),
                _ when HttpMethods.IsDelete(method) => CancelUploadAsync(context, session),
                _ => UnsupportedAsync(context),
            });
            return;
        }
        else if (Split(rest, "/blobs/") is var (blobName, digest))
        {
            await (method switch
            {
                _ when !ValidName(blobName) => NameInvalidAsync(context, blobName),
                _ when HttpMethods.IsGet(method) || HttpMethods.IsHead(method) => GetBlobAsync(context, digest),
                _ when HttpMethods.IsDelete(method) => ErrorAsync(context, 405, "UNSUPPORTED", "blobs are shared by all repositories (and by modules): they are not deleted one by one"),
                _ => UnsupportedAsync(context),
            });
            return;
        }

        await ErrorAsync(context, 404, "NOT_FOUND", $"no registry endpoint at {method} /v2/{rest}");
    }

    private static (string Name, string Tail)? Split(string path, string marker)
    {
        var at = path.LastIndexOf(marker, StringComparison.Ordinal);
        return at <= 0 ? null : (path[..at], path[(at + marker.Length)..]);
    }

    private static async Task CatalogAsync(HttpContext context)
    {
        var store = context.RequestServices.GetRequiredService<IControlPlaneStore>();
        var repositories = (await store.ListImageTagsAsync(null, context.RequestAborted)).Select(t => t.Repository).Distinct().ToList();
        await WriteJsonAsync(context, 200, new JsonObject { ["repositories"] = new JsonArray([.. repositories.Select(r => (JsonNode)r)]) });
    }

    private static async Task TagsAsync(HttpContext context, string name)
    {
        var store = context.RequestServices.GetRequiredService<IControlPlaneStore>();
        var tags = await store.ListImageTagsAsync(name, context.RequestAborted);
        if (tags.Count == 0)
        {
            await ErrorAsync(context, 404, "NAME_UNKNOWN", $"repository '{name}' has no tags");
            return;
        }

        IEnumerable<string> page = tags.Select(t => t.Tag).Order(StringComparer.Ordinal);
        if (context.Request.Query["last"].ToString() is { Length: > 0 } last)
        {
            page = page.Where(t => string.CompareOrdinal(t, last) > 0);
        }

        if (int.TryParse(context.Request.Query["n"], NumberStyles.None, CultureInfo.InvariantCulture, out var n))
        {
            var list = page.ToList();
            if (list.Count > n)
            {
                context.Response.Headers.Link = $"</v2/{name}/tags/list?n={n}&last={Uri.EscapeDataString(list[n - 1])}>; rel=\"next\"";
            }

            page = list.Take(n);
        }

        await WriteJsonAsync(context, 200, new JsonObject { ["name"] = name, ["tags"] = new JsonArray([.. page.Select(t => (JsonNode)t)]) });
    }

    private static async Task GetManifestAsync(HttpContext context, string name, string reference)
    {
        var store = context.RequestServices.GetRequiredService<IControlPlaneStore>();
        var digest = Digest.IsValid(reference) ? reference : ValidTag(reference) ? await store.GetImageTagAsync(name, reference, context.RequestAborted) : null;
        if (digest is null || await ReadBlobAsync(store, digest, MaxManifestBytes, context.RequestAborted) is not { } bytes)
        {
            await ErrorAsync(context, 404, "MANIFEST_UNKNOWN", $"manifest '{name}:{reference}' is not in the registry");
            return;
        }

        ImageManifest manifest;
        try
        {
            manifest = ImageManifest.Parse(bytes);
        }
        catch (ImageException)
        {
            // A module or a layer, asked for as a manifest.
            await ErrorAsync(context, 404, "MANIFEST_UNKNOWN", $"{digest} is not a manifest");
            return;
        }

        context.Response.Headers["Docker-Content-Digest"] = digest;
        context.Response.Headers.ETag = $"\"{digest}\"";
        context.Response.ContentType = manifest.MediaType;
        context.Response.ContentLength = bytes.Length;
        if (!HttpMethods.IsHead(context.Request.Method))
        {
            await context.Response.Body.WriteAsync(bytes, context.RequestAborted);
        }
    }

    private static async Task PutManifestAsync(HttpContext context, string name, string reference)
    {
        var byDigest = Digest.IsValid(reference);
        if (!byDigest && !ValidTag(reference))
        {
            await ErrorAsync(context, 400, "TAG_INVALID", $"'{reference}' is neither a tag ([A-Za-z0-9_][A-Za-z0-9._-]{{0,127}}) nor a digest");
            return;
        }

        var bytes = await ReadBodyAsync(context, MaxManifestBytes);
        if (bytes is null)
        {
            await ErrorAsync(context, 400, "SIZE_INVALID", $"manifests are limited to {MaxManifestBytes / (1024 * 1024)} MiB");
            return;
        }

        var digest = Digest.Compute(bytes);
        if (byDigest && digest != reference)
        {
            await ErrorAsync(context, 400, "DIGEST_INVALID", $"the manifest's bytes hash to {digest}, not {reference}");
            return;
        }

        ImageManifest manifest;
        try
        {
            manifest = ImageManifest.Parse(bytes, context.Request.ContentType);
        }
        catch (ImageException e)
        {
            await ErrorAsync(context, 400, "MANIFEST_INVALID", e.Message);
            return;
        }

        var store = context.RequestServices.GetRequiredService<IControlPlaneStore>();
        var referenced = manifest.IsIndex ? manifest.Manifests : [manifest.Config!, .. manifest.Layers];
        foreach (var blob in referenced)
        {
            if (await store.GetBlobSizeAsync(blob.Digest, context.RequestAborted) is not { } size)
            {
                await ErrorAsync(context, 400, "MANIFEST_BLOB_UNKNOWN", $"the manifest names {blob.Digest}, which was not pushed to this registry");
                return;
            }

            if (size != blob.Size)
            {
                await ErrorAsync(context, 400, "MANIFEST_INVALID", $"the manifest gives {blob.Digest} a size of {blob.Size} bytes; it has {size}");
                return;
            }
        }

        await store.PutBlobAsync(digest, bytes, context.RequestAborted);
        if (!byDigest)
        {
            await store.SetImageTagAsync(name, reference, digest, context.RequestAborted);
        }

        context.Items[OutpostServer.AuditDetailKey] = $"pushed image {name}{(byDigest ? "@" : ":")}{reference} ({digest})";
        context.Response.Headers.Location = $"/v2/{name}/manifests/{digest}";
        context.Response.Headers["Docker-Content-Digest"] = digest;
        context.Response.StatusCode = 201;
    }

    private static async Task DeleteManifestAsync(HttpContext context, string name, string reference)
    {
        var store = context.RequestServices.GetRequiredService<IControlPlaneStore>();
        var removed = 0;
        if (Digest.IsValid(reference))
        {
            foreach (var tag in (await store.ListImageTagsAsync(name, context.RequestAborted)).Where(t => t.Digest == reference))
            {
                removed += await store.DeleteImageTagAsync(name, tag.Tag, context.RequestAborted) ? 1 : 0;
            }
        }
        else if (ValidTag(reference))
        {
            removed = await store.DeleteImageTagAsync(name, reference, context.RequestAborted) ? 1 : 0;
        }

        if (removed == 0)
        {
            await ErrorAsync(context, 404, "MANIFEST_UNKNOWN", $"no tag of '{name}' is '{reference}'");
            return;
        }

        context.Items[OutpostServer.AuditDetailKey] = $"untagged image {name} {reference}";
        context.Response.StatusCode = 202;
    }

    private static async Task GetBlobAsync(HttpContext context, string digest)
    {
        if (!Digest.IsValid(digest))
        {
            await ErrorAsync(context, 400, "DIGEST_INVALID", $"'{digest}' is not a digest (sha256:<64 lowercase hex>)");
            return;
        }

        var store = context.RequestServices.GetRequiredService<IControlPlaneStore>();
        if (await store.GetBlobSizeAsync(digest, context.RequestAborted) is not { } size)
        {
            await ErrorAsync(context, 404, "BLOB_UNKNOWN", $"blob {digest} is not in the registry");
            return;
        }

        long start = 0;
        var end = size - 1;
        if (context.Request.Headers.Range.ToString() is { Length: > 0 } range && RangePattern().Match(range) is { Success: true } match)
        {
            start = long.Parse(match.Groups[1].Value, CultureInfo.InvariantCulture);
            end = match.Groups[2].Success ? Math.Min(end, long.Parse(match.Groups[2].Value, CultureInfo.InvariantCulture)) : end;
            if (start > end)
            {
                context.Response.Headers.ContentRange = $"bytes */{size}";
                context.Response.StatusCode = 416;
                return;
            }

            context.Response.StatusCode = 206;
            context.Response.Headers.ContentRange = $"bytes {start}-{end}/{size}";
        }

        context.Response.Headers["Docker-Content-Digest"] = digest;
        context.Response.Headers.AcceptRanges = "bytes";
        context.Response.ContentType = "application/octet-stream";
        context.Response.ContentLength = end - start + 1;
        if (HttpMethods.IsHead(context.Request.Method))
        {
            return;
        }

        var buffer = new byte[1024 * 1024];
        for (var offset = start; offset <= end;)
        {
            var read = await store.ReadBlobAsync(digest, offset, buffer.AsMemory(0, (int)Math.Min(buffer.Length, end - offset + 1)), context.RequestAborted);
            if (read == 0)
            {
                break;
            }

            await context.Response.Body.WriteAsync(buffer.AsMemory(0, read), context.RequestAborted);
            offset += read;
        }
    }

    private static async Task StartUploadAsync(HttpContext context, string name)
    {
        var store = context.RequestServices.GetRequiredService<IControlPlaneStore>();
        var query = context.Request.Query;
        if (query["mount"].ToString() is { Length: > 0 } mount)
        {
            // Blobs are shared by every repository: a mount is only a check that the blob is here.
            if (Digest.IsValid(mount) && await store.GetBlobSizeAsync(mount, context.RequestAborted) is not null)
            {
                context.Response.Headers.Location = $"/v2/{name}/blobs/{mount}";
                context.Response.Headers["Docker-Content-Digest"] = mount;
                context.Response.StatusCode = 201;
                return;
            }
        }

        var uploads = UploadDirectory(context);
        RemoveStaleUploads(uploads);
        var session = Guid.NewGuid().ToString("N");
        var path = Path.Combine(uploads, session);
        await File.WriteAllBytesAsync(path, [], context.RequestAborted);
        if (query["digest"].ToString() is { Length: > 0 } digest)
        {
            // Monolithic: the whole blob in this one request.
            await AppendAsync(context, path);
            await CompleteAsync(context, name, path, digest);
            return;
        }

        await AcceptedAsync(context, name, session, 0);
    }

    private static async Task PatchUploadAsync(HttpContext context, string name, string session)
    {
        if (UploadPath(context, session) is not { } path)
        {
            await UnknownUploadAsync(context, session);
            return;
        }

        var have = new FileInfo(path).Length;
        if (context.Request.Headers.ContentRange.ToString() is { Length: > 0 } range
            && ChunkPattern().Match(range) is { Success: true } match
            && long.Parse(match.Groups[1].Value, CultureInfo.InvariantCulture) != have)
        {
            context.Response.Headers.Range = $"0-{have - 1}";
            context.Response.Headers.Location = $"/v2/{name}{UploadsPath}/{session}";
            await ErrorAsync(context, 416, "BLOB_UPLOAD_INVALID", $"the chunk starts at {match.Groups[1].Value}, but the upload has {have} bytes");
            return;
        }

        if (!await AppendAsync(context, path))
        {
            return;
        }

        await AcceptedAsync(context, name, session, new FileInfo(path).Length);
    }

    private static async Task FinishUploadAsync(HttpContext context, string name, string session)
    {
        if (UploadPath(context, session) is not { } path)
        {
            await UnknownUploadAsync(context, session);
            return;
        }

        if (!await AppendAsync(context, path))
        {
            return;
        }

        await CompleteAsync(context, name, path, context.Request.Query["digest"].ToString());
    }

    private static async Task UploadStatusAsync(HttpContext context, string name, string session)
    {
        if (UploadPath(context, session) is not { } path)
        {
            await UnknownUploadAsync(context, session);
            return;
        }

        await AcceptedAsync(context, name, session, new FileInfo(path).Length, status: 204);
    }

    private static async Task CancelUploadAsync(HttpContext context, string session)
    {
        if (UploadPath(context, session) is not { } path)
        {
            await UnknownUploadAsync(context, session);
            return;
        }

        File.Delete(path);
        context.Response.StatusCode = 204;
    }

    /// <summary>Appends the request body to the upload; false (and the error answered) if it grew past the limit.</summary>
    private static async Task<bool> AppendAsync(HttpContext context, string path)
    {
        if (context.Features.Get<IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } limit)
        {
            limit.MaxRequestBodySize = null; // the upload's own limit applies, below
        }

        await using (var file = new FileStream(path, FileMode.Append, FileAccess.Write, FileShare.None, 1 << 16, useAsync: true))
        {
            var buffer = new byte[1 << 16];
            int read;
            while ((read = await context.Request.Body.ReadAsync(buffer, context.RequestAborted)) > 0)
            {
                if (file.Length + read > MaxBlobBytes)
                {
                    break;
                }

                await file.WriteAsync(buffer.AsMemory(0, read), context.RequestAborted);
            }

            if (read == 0)
            {
                return true;
            }
        }

        File.Delete(path);
        await ErrorAsync(context, 413, "SIZE_INVALID", $"blobs are limited to {MaxBlobBytes / (1024 * 1024)} MiB in this registry; the upload was dropped");
        return false;
    }

    private static async Task CompleteAsync(HttpContext context, string name, string path, string digest)
    {
        try
        {
            if (!Digest.IsValid(digest))
            {
                await ErrorAsync(context, 400, "DIGEST_INVALID", $"finishing an upload needs ?digest=sha256:<64 lowercase hex>, not '{digest}'");
                return;
            }

            var content = await File.ReadAllBytesAsync(path, context.RequestAborted);
            var actual = "sha256:" + Convert.ToHexStringLower(SHA256.HashData(content));
            if (actual != digest)
            {
                await ErrorAsync(context, 400, "DIGEST_INVALID", $"the uploaded bytes hash to {actual}, not {digest}; nothing was stored");
                return;
            }

            await context.RequestServices.GetRequiredService<IControlPlaneStore>().PutBlobAsync(digest, content, context.RequestAborted);
            context.Response.Headers.Location = $"/v2/{name}/blobs/{digest}";
            context.Response.Headers["Docker-Content-Digest"] = digest;
            context.Response.StatusCode = 201;
        }
        finally
        {
            File.Delete(path);
        }
    }

    private static Task AcceptedAsync(HttpContext context, string name, string session, long length, int status = 202)
    {
        context.Response.Headers.Location = $"/v2/{name}{UploadsPath}/{session}";
        context.Response.Headers.Range = $"0-{Math.Max(0, length - 1)}";
        context.Response.Headers["Docker-Upload-UUID"] = session;
        context.Response.ContentLength = 0;
        context.Response.StatusCode = status;
        return Task.CompletedTask;
    }

    private static string UploadDirectory(HttpContext context)
    {
        var directory = Path.Combine(context.RequestServices.GetRequiredService<ServerOptions>().DataDir, "registry-uploads");
        Directory.CreateDirectory(directory);
        return directory;
    }

    private static string? UploadPath(HttpContext context, string session)
    {
        if (!Guid.TryParseExact(session, "N", out _))
        {
            return null;
        }

        var path = Path.Combine(UploadDirectory(context), session);
        return File.Exists(path) ? path : null;
    }

    private static void RemoveStaleUploads(string directory)
    {
        foreach (var file in Directory.EnumerateFiles(directory))
        {
            if (File.GetLastWriteTimeUtc(file) < DateTime.UtcNow - UploadLifetime)
            {
                File.Delete(file);
            }
        }
    }

    private static async Task<byte[]?> ReadBodyAsync(HttpContext context, int limit)
    {
        using var buffer = new MemoryStream();
        var chunk = new byte[1 << 16];
        int read;
        while ((read = await context.Request.Body.ReadAsync(chunk, context.RequestAborted)) > 0)
        {
            if (buffer.Length + read > limit)
            {
                return null;
            }

            buffer.Write(chunk, 0, read);
        }

        return buffer.ToArray();
    }

    /// <summary>A blob read whole (a manifest, a config), or null when it is not stored or larger than <paramref name="limit"/>.</summary>
    internal static async Task<byte[]?> ReadBlobAsync(IControlPlaneStore store, string digest, int limit, CancellationToken cancellationToken)
    {
        if (await store.GetBlobSizeAsync(digest, cancellationToken) is not { } size || size > limit)
        {
            return null;
        }

        var bytes = new byte[size];
        var offset = 0;
        while (offset < size)
        {
            var read = await store.ReadBlobAsync(digest, offset, bytes.AsMemory(offset), cancellationToken);
            if (read == 0)
            {
                break;
            }

            offset += read;
        }

        return bytes;
    }

    private static Task WriteJsonAsync(HttpContext context, int status, JsonObject body)
    {
        context.Response.StatusCode = status;
        context.Response.ContentType = "application/json";
        return HttpMethods.IsHead(context.Request.Method) ? Task.CompletedTask : context.Response.WriteAsync(body.ToJsonString());
    }

    private static Task NameInvalidAsync(HttpContext context, string name) =>
        ErrorAsync(context, 400, "NAME_INVALID", $"'{name}' is not a repository name (lowercase path components of [a-z0-9] joined by '.', '_', '__' or '-')");

    private static Task UnknownUploadAsync(HttpContext context, string session) =>
        ErrorAsync(context, 404, "BLOB_UPLOAD_UNKNOWN", $"no upload '{session}' is under way on this server (uploads last {UploadLifetime.TotalHours:0} h)");

    private static Task UnsupportedAsync(HttpContext context) =>
        ErrorAsync(context, 405, "UNSUPPORTED", $"{context.Request.Method} is not supported here");

    private static bool ValidName(string name) => name.Length <= 255 && NamePattern().IsMatch(name);

    private static bool ValidTag(string tag) => TagPattern().IsMatch(tag);

    [GeneratedRegex("^[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\\.|_|__|-+)[a-z0-9]+)*)*$")]
    private static partial Regex NamePattern();

    [GeneratedRegex("^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$")]
    private static partial Regex TagPattern();

    [GeneratedRegex("^bytes=(\\d+)-(\\d+)?$")]
    private static partial Regex RangePattern();

    [GeneratedRegex("^(?:bytes )?(\\d+)-(\\d+)")]
    private static partial Regex ChunkPattern();
}
