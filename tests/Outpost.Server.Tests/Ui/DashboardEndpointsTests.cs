using System.IO.Compression;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Microsoft.Extensions.Logging;
using Outpost.Core.Api;
using Outpost.Server.Hosting;
using Outpost.Server.Ui;

namespace Outpost.Server.Tests.Ui;

/// <summary>The dashboard's files as a real server serves them, and the "who am I" it signs in with.</summary>
public sealed partial class DashboardEndpointsTests : IAsyncLifetime
{
    private readonly string _dir = Directory.CreateTempSubdirectory("outpost-ui-").FullName;
    private OutpostServer _server = null!;
    private HttpClient _http = null!;
    private string _token = "";

    public async Task InitializeAsync()
    {
        _server = OutpostServer.Create(new ServerOptions { DataDir = _dir, Listen = "127.0.0.1:0" }, logging => logging.ClearProviders());
        await _server.StartAsync(CancellationToken.None);
        _token = ClientConfig.Parse(await File.ReadAllTextAsync(_server.ConfigPath), _server.ConfigPath).Token;
        _http = new HttpClient(new SocketsHttpHandler
        {
            SslOptions = new System.Net.Security.SslClientAuthenticationOptions { RemoteCertificateValidationCallback = _server.Trust!.ServerValidator() },
            AllowAutoRedirect = false,
            AutomaticDecompression = DecompressionMethods.None,
        })
        { BaseAddress = new Uri(_server.Url) };
    }

    public async Task DisposeAsync()
    {
        _http.Dispose();
        await _server.DisposeAsync();
        Directory.Delete(_dir, recursive: true);
    }

    private async Task<HttpResponseMessage> GetAsync(string path, string? acceptEncoding = null, string? ifNoneMatch = null)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, path);
        if (acceptEncoding is not null)
        {
            request.Headers.TryAddWithoutValidation("Accept-Encoding", acceptEncoding);
        }

        if (ifNoneMatch is not null)
        {
            request.Headers.TryAddWithoutValidation("If-None-Match", ifNoneMatch);
        }

        return await _http.SendAsync(request);
    }

    private static async Task<string> TextAsync(HttpResponseMessage response)
    {
        var bytes = await response.Content.ReadAsByteArrayAsync();
        Stream stream = new MemoryStream(bytes);
        stream = response.Content.Headers.ContentEncoding.FirstOrDefault() switch
        {
            "br" => new BrotliStream(stream, CompressionMode.Decompress),
            "gzip" => new GZipStream(stream, CompressionMode.Decompress),
            null => stream,
            var other => throw new InvalidOperationException("unexpected encoding " + other),
        };
        using var reader = new StreamReader(stream, Encoding.UTF8);
        return await reader.ReadToEndAsync();
    }

    [Fact]
    public async Task Index_IsCompressed_StrictlyPolicied_AndRevalidatedByETag()
    {
        using var br = await GetAsync("/ui/", "gzip, deflate, br");
        Assert.Equal(HttpStatusCode.OK, br.StatusCode);
        Assert.Equal("br", Assert.Single(br.Content.Headers.ContentEncoding));
        Assert.Equal("text/html; charset=utf-8", br.Content.Headers.ContentType!.ToString());
        var policy = Assert.Single(br.Headers.GetValues("Content-Security-Policy"));
        Assert.Equal(DashboardEndpoints.ContentSecurityPolicy, policy);
        Assert.Contains("script-src 'self';", policy, StringComparison.Ordinal);
        Assert.Contains("frame-ancestors 'none'", policy, StringComparison.Ordinal);
        Assert.DoesNotContain("unsafe", policy, StringComparison.Ordinal);
        Assert.Equal("nosniff", Assert.Single(br.Headers.GetValues("X-Content-Type-Options")));
        var html = await TextAsync(br);
        Assert.Contains("<script type=\"module\" src=\"js/app.js\"></script>", html, StringComparison.Ordinal);

        using var gzip = await GetAsync("/ui/index.html", "gzip");
        Assert.Equal("gzip", Assert.Single(gzip.Content.Headers.ContentEncoding));
        Assert.Equal(html, await TextAsync(gzip));
        using var plain = await GetAsync("/ui/index.html");
        Assert.Empty(plain.Content.Headers.ContentEncoding);
        Assert.Equal(html, await TextAsync(plain));
        Assert.True(br.Content.Headers.ContentLength < plain.Content.Headers.ContentLength);

        var etag = br.Headers.ETag!.Tag;
        using var again = await GetAsync("/ui/", "br", etag);
        Assert.Equal(HttpStatusCode.NotModified, again.StatusCode);
        Assert.Equal("no-cache", br.Headers.CacheControl!.ToString());
    }

    [Fact]
    public async Task EveryFileThePagesLoad_IsEmbedded_AndNoneRunsInlineCode()
    {
        // From index.html, follow every src/href and every module import to the end.
        var pending = new Queue<string>(["index.html"]);
        var seen = new HashSet<string>(StringComparer.Ordinal);
        while (pending.TryDequeue(out var path))
        {
            if (!seen.Add(path))
            {
                continue;
            }

            using var response = await GetAsync("/ui/" + path, "br");
            Assert.True(response.StatusCode == HttpStatusCode.OK, $"{path}: {(int)response.StatusCode}");
            Assert.Equal(DashboardAssets.ContentTypeOf(path), response.Content.Headers.ContentType!.ToString());
            var text = await TextAsync(response);
            var folder = path.Contains('/', StringComparison.Ordinal) ? path[..(path.LastIndexOf('/') + 1)] : "";
            if (path.EndsWith(".html", StringComparison.Ordinal))
            {
                Assert.DoesNotMatch(InlineScript(), text);
                Assert.DoesNotMatch(InlineHandlerOrStyle(), text);
                foreach (Match m in Reference().Matches(text))
                {
                    pending.Enqueue(folder + m.Groups[1].Value);
                }
            }
            else if (path.EndsWith(".js", StringComparison.Ordinal))
            {
                // The scripts never hand fleet text to an HTML parser.
                Assert.DoesNotMatch(HtmlSinks(), text);
                foreach (Match m in Import().Matches(text))
                {
                    pending.Enqueue(folder + m.Groups[1].Value.TrimStart('.', '/'));
                }
            }
        }

        Assert.Contains("js/fleet.js", seen);
        Assert.Contains("app.css", seen);
        Assert.Equal(DashboardAssets.Current.Paths.Order(StringComparer.Ordinal), seen.Order(StringComparer.Ordinal));
    }

    [Fact]
    public async Task AnUnknownFile_Is404_AndTheRootLeadsToTheDashboard()
    {
        using var missing = await GetAsync("/ui/js/nope.js");
        Assert.Equal(HttpStatusCode.NotFound, missing.StatusCode);
        Assert.Contains("no such dashboard file: js/nope.js", await missing.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        foreach (var path in new[] { "/", "/ui" })
        {
            using var redirect = await GetAsync(path);
            Assert.Equal(HttpStatusCode.Redirect, redirect.StatusCode);
            Assert.Equal("/ui/", redirect.Headers.Location!.ToString());
        }
    }

    [Fact]
    public async Task SelfSubjectReview_NamesTheRole_ForAViewerToo_AndNeedsAToken()
    {
        async Task<(HttpStatusCode, JsonObject)> ReviewAsync(string? token)
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, "/apis/authentication.k8s.io/v1/selfsubjectreviews")
            {
                Content = new StringContent("""{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}""", Encoding.UTF8, "application/json"),
            };
            if (token is not null)
            {
                request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
            }

            using var response = await _http.SendAsync(request);
            return (response.StatusCode, JsonNode.Parse(await response.Content.ReadAsStringAsync())!.AsObject());
        }

        var (status, admin) = await ReviewAsync(_token);
        Assert.Equal(HttpStatusCode.Created, status);
        Assert.Equal("SelfSubjectReview", (string?)admin["kind"]);
        Assert.Contains("outpost:admin", admin["status"]!["userInfo"]!["groups"]!.AsArray().Select(g => (string?)g));

        using var create = new HttpRequestMessage(HttpMethod.Post, "/apis/outpost.dev/v1/tokens")
        {
            Content = new StringContent("""{"kind":"api","role":"viewer","description":"wall screen"}""", Encoding.UTF8, "application/json"),
        };
        create.Headers.Authorization = new AuthenticationHeaderValue("Bearer", _token);
        using var created = await _http.SendAsync(create);
        Assert.Equal(HttpStatusCode.Created, created.StatusCode);
        var viewerToken = (string)JsonNode.Parse(await created.Content.ReadAsStringAsync())!["token"]!;

        // A viewer may ask (it changes nothing), and learns it is a viewer.
        var (viewerStatus, viewer) = await ReviewAsync(viewerToken);
        Assert.Equal(HttpStatusCode.Created, viewerStatus);
        var info = viewer["status"]!["userInfo"]!;
        Assert.Equal(["outpost:viewer", "system:authenticated"], info["groups"]!.AsArray().Select(g => (string?)g));
        Assert.Contains("wall screen", (string?)info["username"], StringComparison.Ordinal);

        var (anonymous, refusal) = await ReviewAsync(null);
        Assert.Equal(HttpStatusCode.Unauthorized, anonymous);
        Assert.Equal("Unauthorized", (string?)refusal["reason"]);
    }

    [GeneratedRegex(@"<script(?![^>]*\bsrc=)[^>]*>", RegexOptions.IgnoreCase)]
    private static partial Regex InlineScript();

    [GeneratedRegex(@"\s(on[a-z]+|style)\s*=", RegexOptions.IgnoreCase)]
    private static partial Regex InlineHandlerOrStyle();

    [GeneratedRegex(@"(?:src|href)=""(?!#|https?:)([^""]+)""")]
    private static partial Regex Reference();

    [GeneratedRegex(@"from '(\./[^']+)'")]
    private static partial Regex Import();

    [GeneratedRegex(@"innerHTML|outerHTML|insertAdjacentHTML|document\.write|createContextualFragment|\beval\(|new Function\(")]
    private static partial Regex HtmlSinks();
}
