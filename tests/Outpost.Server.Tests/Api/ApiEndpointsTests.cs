using Microsoft.Extensions.Logging;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json.Nodes;
using Outpost.Core.Api;
using Outpost.Server.Hosting;

namespace Outpost.Server.Tests.Api;

/// <summary>The REST API against a real server on 127.0.0.1:0 with a real SQLite store.</summary>
public sealed class ApiEndpointsTests : IAsyncLifetime
{
    private readonly string _dir = Directory.CreateTempSubdirectory("outpost-api-").FullName;
    private OutpostServer _server = null!;
    private HttpClient _http = null!;
    private string _digest = "";

    public async Task InitializeAsync()
    {
        _server = OutpostServer.Create(new ServerOptions { DataDir = _dir, Listen = "127.0.0.1:0" }, logging => logging.ClearProviders());
        await _server.StartAsync(CancellationToken.None);
        var config = ClientConfig.Parse(await File.ReadAllTextAsync(_server.ConfigPath), _server.ConfigPath);
        _http = new HttpClient(TrustingHandler())
        {
            BaseAddress = new Uri(_server.Url),
            DefaultRequestVersion = HttpVersion.Version20,
            DefaultVersionPolicy = HttpVersionPolicy.RequestVersionExact,
        };
        _http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", config.Token);
        var wasm = Wasmtime.Module.ConvertText("""(module (memory (export "memory") 1) (func (export "_start")))""");
        var push = await SendAsync(HttpMethod.Post, "/apis/outpost.dev/v1/blobs", new ByteArrayContent(wasm));
        Assert.Equal(HttpStatusCode.Created, push.Status);
        _digest = (string)push.Body["digest"]!;
    }

    public async Task DisposeAsync()
    {
        _http.Dispose();
        await _server.DisposeAsync();
        Directory.Delete(_dir, recursive: true);
    }

    /// <summary>A handler that trusts this server's CA and nothing else.</summary>
    private SocketsHttpHandler TrustingHandler() => new()
    {
        SslOptions = new System.Net.Security.SslClientAuthenticationOptions { RemoteCertificateValidationCallback = _server.Trust!.ServerValidator() },
    };

    private const string Apps = "/apis/outpost.dev/v1/applications";

    private string App(string name, string route = "/x", string labels = "{}") => new JsonObject
    {
        ["apiVersion"] = "outpost.dev/v1",
        ["kind"] = "Application",
        ["metadata"] = new JsonObject { ["name"] = name, ["labels"] = JsonNode.Parse(labels) },
        ["spec"] = new JsonObject
        {
            ["module"] = new JsonObject { ["digest"] = _digest },
            ["triggers"] = new JsonObject { ["http"] = new JsonObject { ["route"] = route } },
        },
    }.ToJsonString();

    private async Task<(HttpStatusCode Status, JsonObject Body)> SendAsync(HttpMethod method, string path, HttpContent? content = null)
    {
        using var request = new HttpRequestMessage(method, path) { Content = content, Version = HttpVersion.Version20, VersionPolicy = HttpVersionPolicy.RequestVersionExact };
        using var response = await _http.SendAsync(request);
        var text = await response.Content.ReadAsStringAsync();
        return (response.StatusCode, text.Length == 0 ? [] : JsonNode.Parse(text)!.AsObject());
    }

    private Task<(HttpStatusCode Status, JsonObject Body)> SendJsonAsync(HttpMethod method, string path, string json, string type = "application/json") =>
        SendAsync(method, path, new StringContent(json, Encoding.UTF8, type));

    private static void AssertStatus(JsonObject body, int code, string reason)
    {
        Assert.Equal("Status", (string?)body["kind"]);
        Assert.Equal("Failure", (string?)body["status"]);
        Assert.Equal(code, (int)body["code"]!);
        Assert.Equal(reason, (string?)body["reason"]);
    }

    [Fact]
    public async Task Create_ThenGet_ReturnsKubernetesShapedObject()
    {
        var (status, created) = await SendJsonAsync(HttpMethod.Post, Apps, App("a"));

        Assert.Equal(HttpStatusCode.Created, status);
        var (_, read) = await SendAsync(HttpMethod.Get, $"{Apps}/a");
        Assert.Equal("outpost.dev/v1", (string?)read["apiVersion"]);
        Assert.Equal(created["metadata"]!["uid"]!.ToString(), read["metadata"]!["uid"]!.ToString());
        Assert.IsType<string>((string?)read["metadata"]!["resourceVersion"]);
        Assert.Equal(1, (int)read["metadata"]!["generation"]!);
        Assert.NotNull(read["metadata"]!["creationTimestamp"]);
    }

    [Fact]
    public async Task Create_Duplicate_IsAlreadyExists()
    {
        await SendJsonAsync(HttpMethod.Post, Apps, App("a"));

        var (status, body) = await SendJsonAsync(HttpMethod.Post, Apps, App("a"));

        Assert.Equal(HttpStatusCode.Conflict, status);
        AssertStatus(body, 409, "AlreadyExists");
    }

    [Fact]
    public async Task Get_Missing_IsNotFoundStatus()
    {
        var (status, body) = await SendAsync(HttpMethod.Get, $"{Apps}/nope");

        Assert.Equal(HttpStatusCode.NotFound, status);
        AssertStatus(body, 404, "NotFound");
        Assert.Equal("nope", (string?)body["details"]!["name"]);
    }

    [Fact]
    public async Task Put_WithStaleResourceVersion_IsConflict()
    {
        var (_, created) = await SendJsonAsync(HttpMethod.Post, Apps, App("a"));
        var staleVersion = (string)created["metadata"]!["resourceVersion"]!;
        await SendJsonAsync(HttpMethod.Put, $"{Apps}/a", App("a", "/y"));

        var stale = JsonNode.Parse(App("a", "/z"))!.AsObject();
        stale["metadata"]!["resourceVersion"] = staleVersion;
        var (status, body) = await SendJsonAsync(HttpMethod.Put, $"{Apps}/a", stale.ToJsonString());

        Assert.Equal(HttpStatusCode.Conflict, status);
        AssertStatus(body, 409, "Conflict");
    }

    [Fact]
    public async Task MergePatch_ChangesSpecAndBumpsGeneration()
    {
        await SendJsonAsync(HttpMethod.Post, Apps, App("a"));

        var (status, patched) = await SendJsonAsync(HttpMethod.Patch, $"{Apps}/a", """{"spec":{"triggers":{"http":{"route":"/patched"}}}}""", "application/merge-patch+json");

        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal("/patched", (string?)patched["spec"]!["triggers"]!["http"]!["route"]);
        Assert.Equal(2, (int)patched["metadata"]!["generation"]!);
    }

    [Fact]
    public async Task Patch_WithOtherContentType_IsUnsupportedMediaType()
    {
        await SendJsonAsync(HttpMethod.Post, Apps, App("a"));

        var (status, body) = await SendJsonAsync(HttpMethod.Patch, $"{Apps}/a", "[]", "application/json-patch+json");

        Assert.Equal(HttpStatusCode.UnsupportedMediaType, status);
        Assert.Equal("Status", (string?)body["kind"]);
    }

    [Fact]
    public async Task List_FiltersByLabelSelectorAndCarriesListKind()
    {
        await SendJsonAsync(HttpMethod.Post, Apps, App("a", labels: """{"tier":"edge"}"""));
        await SendJsonAsync(HttpMethod.Post, Apps, App("b", labels: """{"tier":"core"}"""));

        var (_, list) = await SendAsync(HttpMethod.Get, $"{Apps}?labelSelector=tier%3Dedge");

        Assert.Equal("ApplicationList", (string?)list["kind"]);
        Assert.IsType<string>((string?)list["metadata"]!["resourceVersion"]);
        Assert.Equal(["a"], list["items"]!.AsArray().Select(i => (string)i!["metadata"]!["name"]!));
    }

    [Fact]
    public async Task Invalid_NamesEveryField()
    {
        var (status, body) = await SendJsonAsync(HttpMethod.Post, Apps,
            """{"apiVersion":"outpost.dev/v1","kind":"Application","metadata":{"name":"a"},"spec":{"limits":{"timeoutMs":"soon"}}}""");

        Assert.Equal((HttpStatusCode)422, status);
        AssertStatus(body, 422, "Invalid");
        var fields = body["details"]!["causes"]!.AsArray().Select(c => (string)c!["field"]!).ToList();
        Assert.Contains("spec.module", fields);
        Assert.Contains("spec.limits.timeoutMs", fields);
    }

    [Fact]
    public async Task UnknownDigest_IsInvalidWithPushHint()
    {
        var json = App("a").Replace(_digest, "sha256:" + new string('e', 64), StringComparison.Ordinal);

        var (_, body) = await SendJsonAsync(HttpMethod.Post, Apps, json);

        AssertStatus(body, 422, "Invalid");
        Assert.Contains("outpost push", (string?)body["message"], StringComparison.Ordinal);
    }

    [Fact]
    public async Task Apply_IsAllOrNothing()
    {
        var list = $$$"""{"kind":"List","items":[{{{App("good")}}},{"apiVersion":"outpost.dev/v1","kind":"Application","metadata":{"name":"bad"},"spec":{}}]}""";

        var (status, body) = await SendJsonAsync(HttpMethod.Post, "/apis/outpost.dev/v1/apply", list);

        Assert.Equal((HttpStatusCode)422, status);
        Assert.Contains("nothing was applied", (string?)body["message"], StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.NotFound, (await SendAsync(HttpMethod.Get, $"{Apps}/good")).Status);
    }

    [Fact]
    public async Task Push_NotWasm_IsRejected()
    {
        var (status, body) = await SendAsync(HttpMethod.Post, "/apis/outpost.dev/v1/blobs", new ByteArrayContent("not wasm"u8.ToArray()));

        Assert.Equal((HttpStatusCode)422, status);
        Assert.Contains("not a WebAssembly module", (string?)body["message"], StringComparison.Ordinal);
    }

    [Fact]
    public async Task Delete_ThenGet_IsNotFound()
    {
        await SendJsonAsync(HttpMethod.Post, Apps, App("a"));

        var (status, body) = await SendAsync(HttpMethod.Delete, $"{Apps}/a");

        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal("Success", (string?)body["status"]);
        Assert.Equal(HttpStatusCode.NotFound, (await SendAsync(HttpMethod.Get, $"{Apps}/a")).Status);
    }

    [Fact]
    public async Task NoToken_IsUnauthorized_AndJoinTokenIsForbidden()
    {
        using var anonymous = new HttpClient(TrustingHandler()) { BaseAddress = _http.BaseAddress, DefaultRequestVersion = HttpVersion.Version20, DefaultVersionPolicy = HttpVersionPolicy.RequestVersionExact };
        using var response = await anonymous.GetAsync("/api/v1/nodes");
        AssertStatus(JsonNode.Parse(await response.Content.ReadAsStringAsync())!.AsObject(), 401, "Unauthorized");

        var (_, token) = await SendJsonAsync(HttpMethod.Post, "/apis/outpost.dev/v1/tokens", "{}");
        anonymous.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", (string)token["token"]!);
        using var forbidden = await anonymous.GetAsync("/api/v1/nodes");
        AssertStatus(JsonNode.Parse(await forbidden.Content.ReadAsStringAsync())!.AsObject(), 403, "Forbidden");
    }

    [Fact]
    public async Task UnknownPath_IsNotFoundStatus_AndHealthzIsOpen()
    {
        var (status, body) = await SendAsync(HttpMethod.Get, "/apis/outpost.dev/v1/widgets");
        Assert.Equal(HttpStatusCode.NotFound, status);
        Assert.Equal("Status", (string?)body["kind"]);

        using var health = await _http.GetAsync("/healthz");
        Assert.Equal("ok", await health.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task Bucket_IsAnApiKind_AndRejectsAnUnknownPolicy()
    {
        var (status, created) = await SendJsonAsync(HttpMethod.Post, "/apis/outpost.dev/v1/buckets",
            """{"apiVersion":"outpost.dev/v1","kind":"Bucket","metadata":{"name":"counters"},"spec":{"direction":"two-way","conflictPolicy":"edge-wins"}}""");
        Assert.Equal(HttpStatusCode.Created, status);
        Assert.Equal("two-way", (string?)created["spec"]!["direction"]);

        var (_, list) = await SendAsync(HttpMethod.Get, "/apis/outpost.dev/v1/buckets");
        Assert.Equal("BucketList", (string?)list["kind"]);

        var (badStatus, bad) = await SendJsonAsync(HttpMethod.Post, "/apis/outpost.dev/v1/buckets",
            """{"apiVersion":"outpost.dev/v1","kind":"Bucket","metadata":{"name":"x"},"spec":{"conflictPolicy":"newest"}}""");
        Assert.Equal((HttpStatusCode)422, badStatus);
        Assert.Equal("spec.conflictPolicy", (string?)bad["details"]!["causes"]![0]!["field"]);
    }

    [Fact]
    public async Task Restart_KeepsAdminTokenInConfig()
    {
        var before = await File.ReadAllTextAsync(_server.ConfigPath);
        await _server.DisposeAsync();

        _server = OutpostServer.Create(new ServerOptions { DataDir = _dir, Listen = "127.0.0.1:0" }, logging => logging.ClearProviders());
        await _server.StartAsync(CancellationToken.None);
        var after = ClientConfig.Parse(await File.ReadAllTextAsync(_server.ConfigPath), _server.ConfigPath);

        Assert.Equal(ClientConfig.Parse(before, "before").Token, after.Token);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(_server.ConfigPath));
    }

    private async Task CreateBucketAsync(string name, string direction, string policy = "lww")
    {
        var (status, body) = await SendJsonAsync(HttpMethod.Post, "/apis/outpost.dev/v1/buckets",
            new JsonObject
            {
                ["apiVersion"] = "outpost.dev/v1",
                ["kind"] = "Bucket",
                ["metadata"] = new JsonObject { ["name"] = name },
                ["spec"] = new JsonObject { ["direction"] = direction, ["conflictPolicy"] = policy },
            }.ToJsonString());
        Assert.True(status == HttpStatusCode.Created, body.ToJsonString());
    }

    private Task<(HttpStatusCode Status, JsonObject Body)> PutValueAsync(string bucket, string key, byte[] value) =>
        SendAsync(HttpMethod.Put, $"/apis/outpost.dev/v1/buckets/{bucket}/entries/{key}", new ByteArrayContent(value));

    [Fact]
    public async Task BucketEntries_WriteReadListAndDelete_WithKeysContainingSlashes()
    {
        await CreateBucketAsync("settings", "two-way");

        var (status, entry) = await PutValueAsync("settings", "site/berlin/mode", Encoding.UTF8.GetBytes("eco"));
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal(("site/berlin/mode", "eco", "cloud"), ((string?)entry["key"], (string?)entry["text"], (string?)entry["origin"]));

        (status, entry) = await SendAsync(HttpMethod.Get, "/apis/outpost.dev/v1/buckets/settings/entries/site/berlin/mode");
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal(Convert.ToBase64String(Encoding.UTF8.GetBytes("eco")), (string?)entry["value"]);

        var (_, list) = await SendAsync(HttpMethod.Get, "/apis/outpost.dev/v1/buckets/settings/entries");
        Assert.Equal("BucketEntryList", (string?)list["kind"]);
        Assert.Single(list["items"]!.AsArray());

        (status, _) = await SendAsync(HttpMethod.Delete, "/apis/outpost.dev/v1/buckets/settings/entries/site/berlin/mode");
        Assert.Equal(HttpStatusCode.OK, status);
        (status, var missing) = await SendAsync(HttpMethod.Get, "/apis/outpost.dev/v1/buckets/settings/entries/site/berlin/mode");
        AssertStatus(missing, 404, "NotFound");
        Assert.Empty((await SendAsync(HttpMethod.Get, "/apis/outpost.dev/v1/buckets/settings/entries")).Body["items"]!.AsArray());
    }

    [Fact]
    public async Task BucketEntries_BadRequests_NameWhatIsWrong_AndWriteNothing()
    {
        await CreateBucketAsync("telemetry", "edge-to-cloud");
        await CreateBucketAsync("scratch", "edge-local");
        await CreateBucketAsync("flags", "cloud-to-edge");

        var (_, body) = await PutValueAsync("nope", "k", [1]);
        AssertStatus(body, 404, "NotFound");
        Assert.Contains("nope", (string?)body["message"], StringComparison.Ordinal);

        (_, body) = await PutValueAsync("telemetry", "k", [1]);
        AssertStatus(body, 400, "BadRequest");
        Assert.Contains("edge-to-cloud", (string?)body["message"], StringComparison.Ordinal);

        (_, body) = await SendAsync(HttpMethod.Get, "/apis/outpost.dev/v1/buckets/scratch/entries");
        AssertStatus(body, 400, "BadRequest");
        Assert.Contains("edge-local", (string?)body["message"], StringComparison.Ordinal);

        (_, body) = await SendAsync(HttpMethod.Get, "/apis/outpost.dev/v1/buckets/telemetry/entries/k");
        Assert.Contains("?node=", (string?)body["message"], StringComparison.Ordinal);

        (_, body) = await SendAsync(HttpMethod.Get, "/apis/outpost.dev/v1/buckets/flags/entries?node=edge-1");
        AssertStatus(body, 400, "BadRequest");

        var (status, _) = await PutValueAsync("flags", "big", new byte[Core.Resources.BucketSpec.MaxValueBytes + 1]);
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, status);
        (_, body) = await SendAsync(HttpMethod.Get, "/apis/outpost.dev/v1/buckets/flags/conflicts?continue=abc");
        AssertStatus(body, 400, "BadRequest");

        Assert.Empty((await SendAsync(HttpMethod.Get, "/apis/outpost.dev/v1/buckets/flags/entries")).Body["items"]!.AsArray());
    }
}
