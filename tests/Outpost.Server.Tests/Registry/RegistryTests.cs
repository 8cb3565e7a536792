using System.Diagnostics;
using System.Formats.Tar;
using System.IO.Compression;
using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging;
using Outpost.Core.Api;
using Outpost.Core.Resources;
using Outpost.Server.Hosting;

namespace Outpost.Server.Tests.Registry;

/// <summary>The server's OCI registry against a real server on 127.0.0.1:0, pushed to and pulled from by skopeo.</summary>
public sealed class RegistryTests : IAsyncLifetime
{
    private readonly string _dir = Directory.CreateTempSubdirectory("outpost-registry-").FullName;
    private OutpostServer _server = null!;
    private HttpClient _http = null!;
    private string _token = "";
    private string _certs = "";

    public async Task InitializeAsync()
    {
        _server = OutpostServer.Create(new ServerOptions { DataDir = Path.Combine(_dir, "server"), Listen = "127.0.0.1:0" }, logging => logging.ClearProviders());
        await _server.StartAsync(CancellationToken.None);
        _token = ClientConfig.Parse(await File.ReadAllTextAsync(_server.ConfigPath), _server.ConfigPath).Token;
        _http = new HttpClient(new SocketsHttpHandler
        {
            SslOptions = new System.Net.Security.SslClientAuthenticationOptions { RemoteCertificateValidationCallback = _server.Trust!.ServerValidator() },
        })
        { BaseAddress = new Uri(_server.Url) };
        _certs = Path.Combine(_dir, "certs");
        Directory.CreateDirectory(_certs);
        await File.WriteAllTextAsync(Path.Combine(_certs, "ca.crt"), await _http.GetStringAsync(new Uri("/cacerts", UriKind.Relative)));
    }

    public async Task DisposeAsync()
    {
        _http.Dispose();
        await _server.DisposeAsync();
        Directory.Delete(_dir, recursive: true);
    }

    private string Host => new Uri(_server.Url).Authority;

    private static bool HaveSkopeo => Environment.GetEnvironmentVariable("PATH")!.Split(':').Any(d => File.Exists(Path.Combine(d, "skopeo")));

    private async Task<(int Code, string Output)> SkopeoAsync(params string[] args)
    {
        var start = new ProcessStartInfo("skopeo") { RedirectStandardOutput = true, RedirectStandardError = true };
        // No policy file is installed with skopeo's Debian package: accept anything, as its default does.
        var policy = Path.Combine(_dir, "policy.json");
        await File.WriteAllTextAsync(policy, """{"default":[{"type":"insecureAcceptAnything"}]}""");
        start.ArgumentList.Add("--policy");
        start.ArgumentList.Add(policy);
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }

        using var process = Process.Start(start)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync().WaitAsync(TimeSpan.FromMinutes(2));
        return (process.ExitCode, await output + await error);
    }

    [SkippableFact]
    public async Task Skopeo_PushesAnImage_ThenPullsItBack_ByTagAndByDigest_BlobForBlob()
    {
        Skip.IfNot(HaveSkopeo, "skopeo is not installed");
        var layout = Path.Combine(_dir, "layout");
        var image = WriteLayout(layout, "v1", ("greeting.txt", "hello"), ("bin/app", "a program"));

        var (code, output) = await SkopeoAsync("copy", "--dest-cert-dir", _certs, "--dest-creds", $"anyone:{_token}",
            $"oci:{layout}:v1", $"docker://{Host}/team/hello:v1");
        Assert.True(code == 0, output);

        // The registry answers as the spec says.
        _http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", _token);
        Assert.Equal("""{"name":"team/hello","tags":["v1"]}""", await _http.GetStringAsync(new Uri("/v2/team/hello/tags/list", UriKind.Relative)));
        Assert.Equal("""{"repositories":["team/hello"]}""", await _http.GetStringAsync(new Uri("/v2/_catalog", UriKind.Relative)));
        using (var head = await _http.SendAsync(new HttpRequestMessage(HttpMethod.Head, $"/v2/team/hello/manifests/v1")))
        {
            Assert.Equal(HttpStatusCode.OK, head.StatusCode);
            Assert.Equal(image.Manifest, head.Headers.GetValues("Docker-Content-Digest").Single());
        }

        // Pulled back by tag and by digest: the very same blobs.
        foreach (var reference in new[] { ":v1", "@" + image.Manifest })
        {
            var pulled = Path.Combine(_dir, "pulled" + reference.Length);
            (code, output) = await SkopeoAsync("copy", "--src-cert-dir", _certs, "--src-creds", $"anyone:{_token}",
                $"docker://{Host}/team/hello{reference}", $"oci:{pulled}:copy");
            Assert.True(code == 0, output);
            foreach (var blob in image.Blobs)
            {
                Assert.True(File.Exists(Path.Combine(pulled, "blobs", "sha256", blob["sha256:".Length..])), $"{blob} was not pulled");
            }
        }
    }

    [SkippableFact]
    public async Task ASecondImage_SharingABaseLayer_UploadsOnlyItsNewLayer()
    {
        Skip.IfNot(HaveSkopeo, "skopeo is not installed");
        var first = Path.Combine(_dir, "first");
        var shared = Layer(("base.txt", new string('b', 100_000)));
        WriteLayout(first, "v1", [shared, Layer(("one.txt", "one"))]);
        var second = Path.Combine(_dir, "second");
        var image = WriteLayout(second, "v1", [shared, Layer(("two.txt", "two"))]); // blobs: config, shared, new, manifest
        Assert.Equal(0, (await SkopeoAsync("copy", "--dest-cert-dir", _certs, "--dest-creds", $"x:{_token}", $"oci:{first}:v1", $"docker://{Host}/one:v1")).Code);

        var (code, output) = await SkopeoAsync("--debug", "copy", "--dest-cert-dir", _certs, "--dest-creds", $"x:{_token}", $"oci:{second}:v1", $"docker://{Host}/two:v1");

        Assert.True(code == 0, output);
        var sharedDigest = Digest.Compute(shared);
        var newDigest = image.Blobs[2];
        Assert.Contains($"Upload of layer {newDigest} complete", output, StringComparison.Ordinal);
        Assert.DoesNotContain($"Upload of layer {sharedDigest}", output, StringComparison.Ordinal);
        Assert.Contains($"HEAD https://{Host}/v2/two/blobs/{sharedDigest}", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ChunkedUpload_ThenManifest_ThenTagMovesOnTheNextPush()
    {
        _http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", _token);
        var layer = Layer(("data", new string('x', 50_000)));
        var start = await _http.PostAsync(new Uri("/v2/chunky/blobs/uploads/", UriKind.Relative), null);
        Assert.Equal(HttpStatusCode.Accepted, start.StatusCode);
        var location = start.Headers.Location!.ToString();

        var half = layer.Length / 2;
        using (var first = new HttpRequestMessage(HttpMethod.Patch, location) { Content = new ByteArrayContent(layer[..half]) })
        {
            first.Content.Headers.TryAddWithoutValidation("Content-Range", $"0-{half - 1}");
            var patched = await _http.SendAsync(first);
            Assert.Equal(HttpStatusCode.Accepted, patched.StatusCode);
            Assert.Equal($"0-{half - 1}", patched.Headers.GetValues("Range").Single());
        }

        // A chunk that does not start where the upload ends is refused, and the upload survives.
        using (var wrong = new HttpRequestMessage(HttpMethod.Patch, location) { Content = new ByteArrayContent([1, 2, 3]) })
        {
            wrong.Content.Headers.TryAddWithoutValidation("Content-Range", "5-7");
            Assert.Equal(HttpStatusCode.RequestedRangeNotSatisfiable, (await _http.SendAsync(wrong)).StatusCode);
        }

        var digest = Digest.Compute(layer);
        var finish = await _http.PutAsync(new Uri($"{location}?digest={digest}", UriKind.Relative), new ByteArrayContent(layer[half..]));
        Assert.Equal(HttpStatusCode.Created, finish.StatusCode);
        Assert.Equal(layer, await _http.GetByteArrayAsync(new Uri($"/v2/chunky/blobs/{digest}", UriKind.Relative)));

        var config = Encoding.UTF8.GetBytes("""{"architecture":"amd64","os":"linux","config":{}}""");
        var configDigest = Digest.Compute(config);
        Assert.Equal(HttpStatusCode.Created, (await _http.PostAsync(new Uri($"/v2/chunky/blobs/uploads/?digest={configDigest}", UriKind.Relative), new ByteArrayContent(config))).StatusCode);

        var manifest = Manifest(configDigest, config.Length, [(digest, layer.Length)]);
        var put = await _http.PutAsync(new Uri("/v2/chunky/manifests/latest", UriKind.Relative), ManifestContent(manifest));
        Assert.Equal(HttpStatusCode.Created, put.StatusCode);
        Assert.Equal(Digest.Compute(manifest), put.Headers.GetValues("Docker-Content-Digest").Single());

        var other = Manifest(configDigest, config.Length, []);
        Assert.Equal(HttpStatusCode.Created, (await _http.PutAsync(new Uri("/v2/chunky/manifests/latest", UriKind.Relative), ManifestContent(other))).StatusCode);
        using var got = await _http.GetAsync(new Uri("/v2/chunky/manifests/latest", UriKind.Relative));
        Assert.Equal(Digest.Compute(other), got.Headers.GetValues("Docker-Content-Digest").Single());
        Assert.Equal("application/vnd.oci.image.manifest.v1+json", got.Content.Headers.ContentType!.MediaType);
    }

    public static TheoryData<string, string, int, string> BadManifests => new()
    {
        { "missing-blob", Encoding.UTF8.GetString(Manifest("sha256:" + new string('1', 64), 10, [])), 400, "MANIFEST_BLOB_UNKNOWN" },
        { "garbage", "not json at all", 400, "MANIFEST_INVALID" },
        { "zstd", """{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:1111111111111111111111111111111111111111111111111111111111111111","size":1},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+zstd","digest":"sha256:1111111111111111111111111111111111111111111111111111111111111111","size":1}]}""", 400, "MANIFEST_INVALID" },
    };

    [Theory]
    [MemberData(nameof(BadManifests))]
    public async Task BadManifests_AreRefusedWithTheSpecsErrorCode_AndNoTagIsMade(string name, string body, int status, string code)
    {
        _http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", _token);
        using var response = await _http.PutAsync(new Uri($"/v2/{name}/manifests/v1", UriKind.Relative), ManifestContent(Encoding.UTF8.GetBytes(body)));
        var error = JsonNode.Parse(await response.Content.ReadAsStringAsync())!["errors"]![0]!;

        Assert.Equal(status, (int)response.StatusCode);
        Assert.Equal(code, (string?)error["code"]);
        Assert.False(string.IsNullOrEmpty((string?)error["message"]));
        Assert.Equal(HttpStatusCode.NotFound, (await _http.GetAsync(new Uri($"/v2/{name}/tags/list", UriKind.Relative))).StatusCode);
    }

    [Fact]
    public async Task ABlobWhoseBytesDoNotMatchTheDigest_IsNotStored()
    {
        _http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", _token);
        var claimed = Digest.Compute("what was meant"u8);
        using var response = await _http.PostAsync(new Uri($"/v2/x/blobs/uploads/?digest={claimed}", UriKind.Relative), new ByteArrayContent("what arrived"u8.ToArray()));

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Contains("DIGEST_INVALID", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.NotFound, (await _http.SendAsync(new HttpRequestMessage(HttpMethod.Head, $"/v2/x/blobs/{claimed}"))).StatusCode);
    }

    [Fact]
    public async Task WithoutAToken_TheRegistryAsksForBasicAuth_AndAViewerMayPullButNotPush()
    {
        using (var anonymous = await _http.GetAsync(new Uri("/v2/", UriKind.Relative)))
        {
            Assert.Equal(HttpStatusCode.Unauthorized, anonymous.StatusCode);
            Assert.Equal("Basic realm=\"Outpost registry\"", anonymous.Headers.WwwAuthenticate.ToString());
            Assert.Contains("UNAUTHORIZED", await anonymous.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }

        _http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", _token);
        using var created = await _http.PostAsync(new Uri("/apis/outpost.dev/v1/tokens", UriKind.Relative),
            new StringContent("""{"kind":"api","role":"viewer"}""", Encoding.UTF8, "application/json"));
        var viewer = (string)JsonNode.Parse(await created.Content.ReadAsStringAsync())!["token"]!;
        _http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Basic", Convert.ToBase64String(Encoding.UTF8.GetBytes($"viewer:{viewer}")));

        Assert.Equal(HttpStatusCode.OK, (await _http.GetAsync(new Uri("/v2/", UriKind.Relative))).StatusCode);
        using var push = await _http.PostAsync(new Uri("/v2/x/blobs/uploads/", UriKind.Relative), null);
        Assert.Equal(HttpStatusCode.Forbidden, push.StatusCode);
        Assert.Contains("DENIED", await push.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }

    private static ByteArrayContent ManifestContent(byte[] manifest)
    {
        var content = new ByteArrayContent(manifest);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/vnd.oci.image.manifest.v1+json");
        return content;
    }

    private static byte[] Layer(params (string Name, string Content)[] files)
    {
        using var output = new MemoryStream();
        using (var gzip = new GZipStream(output, CompressionLevel.Fastest, leaveOpen: true))
        using (var tar = new TarWriter(gzip, TarEntryFormat.Pax))
        {
            foreach (var (name, content) in files)
            {
                tar.WriteEntry(new PaxTarEntry(TarEntryType.RegularFile, name) { DataStream = new MemoryStream(Encoding.UTF8.GetBytes(content)) });
            }
        }

        return output.ToArray();
    }

    private static byte[] Manifest(string configDigest, long configSize, IReadOnlyList<(string Digest, long Size)> layers) => Encoding.UTF8.GetBytes(new JsonObject
    {
        ["schemaVersion"] = 2,
        ["mediaType"] = "application/vnd.oci.image.manifest.v1+json",
        ["config"] = new JsonObject { ["mediaType"] = "application/vnd.oci.image.config.v1+json", ["digest"] = configDigest, ["size"] = configSize },
        ["layers"] = new JsonArray([.. layers.Select(l => (JsonNode)new JsonObject
        {
            ["mediaType"] = "application/vnd.oci.image.layer.v1.tar+gzip",
            ["digest"] = l.Digest,
            ["size"] = l.Size,
        })]),
    }.ToJsonString());

    private static (string Manifest, IReadOnlyList<string> Blobs) WriteLayout(string directory, string tag, params (string Name, string Content)[] files) =>
        WriteLayout(directory, tag, [Layer(files)]);

    /// <summary>An OCI image layout directory, what <c>skopeo copy oci:DIR:TAG</c> reads.</summary>
    private static (string Manifest, IReadOnlyList<string> Blobs) WriteLayout(string directory, string tag, IReadOnlyList<byte[]> layers)
    {
        var blobs = Path.Combine(directory, "blobs", "sha256");
        Directory.CreateDirectory(blobs);
        string Put(byte[] bytes)
        {
            var digest = "sha256:" + Convert.ToHexStringLower(SHA256.HashData(bytes));
            File.WriteAllBytes(Path.Combine(blobs, digest[7..]), bytes);
            return digest;
        }

        var config = Encoding.UTF8.GetBytes("""{"architecture":"amd64","os":"linux","config":{"Entrypoint":["/bin/app"]},"rootfs":{"type":"layers","diff_ids":[]}}""");
        var configDigest = Put(config);
        var layerDigests = layers.Select(l => (Put(l), (long)l.Length)).ToList();
        var manifest = Manifest(configDigest, config.Length, layerDigests);
        var manifestDigest = Put(manifest);
        File.WriteAllText(Path.Combine(directory, "oci-layout"), """{"imageLayoutVersion":"1.0.0"}""");
        File.WriteAllText(Path.Combine(directory, "index.json"), new JsonObject
        {
            ["schemaVersion"] = 2,
            ["manifests"] = new JsonArray(new JsonObject
            {
                ["mediaType"] = "application/vnd.oci.image.manifest.v1+json",
                ["digest"] = manifestDigest,
                ["size"] = manifest.Length,
                ["annotations"] = new JsonObject { ["org.opencontainers.image.ref.name"] = tag },
            }),
        }.ToJsonString());
        return (manifestDigest, [configDigest, .. layerDigests.Select(l => l.Item1), manifestDigest]);
    }
}
