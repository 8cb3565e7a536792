namespace Outpost.IntegrationTests;

/// <summary>Bad manifests and flags get a clear error naming file, document and field, and change nothing.</summary>
public sealed class BadInputTests : IAsyncLifetime
{
    private readonly Fleet _fleet = new();

    public Task InitializeAsync() => _fleet.StartServerAsync();

    public async Task DisposeAsync() => await _fleet.DisposeAsync();

    private const string Good = """
        apiVersion: outpost.dev/v1
        kind: Application
        metadata:
          name: good
        spec:
          module:
            path: hello.wasm
          triggers:
            http:
              route: /good
        """;

    public static TheoryData<string, string, string[]> Cases => new()
    {
        {
            "unknown-kind.yaml",
            "apiVersion: outpost.dev/v1\nkind: Gadget\nmetadata:\n  name: x\nspec: {}\n",
            ["unknown-kind.yaml (document 1)", "kind", "unknown kind 'Gadget'"]
        },
        {
            "missing-module.yaml",
            "apiVersion: outpost.dev/v1\nkind: Application\nmetadata:\n  name: x\nspec:\n  triggers:\n    http:\n      route: /x\n",
            ["missing-module.yaml (document 1)", "spec.module", "required"]
        },
        {
            "wrong-type.yaml",
            "apiVersion: outpost.dev/v1\nkind: Application\nmetadata:\n  name: x\nspec:\n  module:\n    path: hello.wasm\n  limits:\n    timeoutMs: soon\n",
            ["wrong-type.yaml (document 1)", "spec.limits.timeoutMs", "expected a positive integer"]
        },
        {
            "missing-file.yaml",
            "apiVersion: outpost.dev/v1\nkind: Application\nmetadata:\n  name: x\nspec:\n  module:\n    path: nowhere.wasm\n",
            ["missing-file.yaml (document 1)", "spec.module.path", "does not exist"]
        },
        {
            "not-wasm.yaml",
            "apiVersion: outpost.dev/v1\nkind: Application\nmetadata:\n  name: x\nspec:\n  module:\n    path: not-wasm.yaml\n",
            ["not-wasm.yaml (document 1)", "spec.module.path", "not a WebAssembly module"]
        },
        {
            "duplicate.yaml",
            "apiVersion: outpost.dev/v1\nkind: Application\nmetadata:\n  name: dup\nspec:\n  module:\n    path: hello.wasm\n---\napiVersion: outpost.dev/v1\nkind: Application\nmetadata:\n  name: dup\nspec:\n  module:\n    path: hello.wasm\n",
            ["duplicate.yaml (document 2)", "metadata.name", "duplicate"]
        },
        {
            "bad-name.yaml",
            "apiVersion: outpost.dev/v1\nkind: Application\nmetadata:\n  name: Not_A_Name\nspec:\n  module:\n    path: hello.wasm\n",
            ["bad-name.yaml (document 1)", "metadata.name", "not a valid name"]
        },
        {
            // Accepted once, Ready 2/2 and unreachable: the gateway refuses request lines over 8 KiB.
            "long-route.yaml",
            "apiVersion: outpost.dev/v1\nkind: Application\nmetadata:\n  name: x\nspec:\n  module:\n    path: hello.wasm\n  triggers:\n    http:\n      route: /" + new string('a', 200_000) + "\n",
            ["long-route.yaml (document 1)", "spec.triggers.http.route", "is 200001 characters long: at most 1024"]
        },
        {
            "long-env.yaml",
            "apiVersion: outpost.dev/v1\nkind: Application\nmetadata:\n  name: x\nspec:\n  module:\n    path: hello.wasm\n  env:\n    BIG: " + new string('x', 40_000) + "\n",
            ["long-env.yaml (document 1)", "spec.env.BIG", "the value is 40000 characters long: at most 32768"]
        },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task Apply_BadDocumentAfterAGoodOne_NamesTheProblem_AndAppliesNothing(string file, string badYaml, string[] expected)
    {
        // The good document comes first: all-or-nothing means it must not be applied either.
        var path = _fleet.WriteManifest(file, Good + "\n---\n" + badYaml);
        var reindexed = expected.Select(e => e.Replace("(document 1)", "(document 2)", StringComparison.Ordinal)
            .Replace("(document 2)", file == "duplicate.yaml" ? "(document 3)" : "(document 2)", StringComparison.Ordinal)).ToArray();

        var (code, output) = await _fleet.ClientAsync("apply", "-f", path);

        Assert.NotEqual(0, code);
        foreach (var fragment in reindexed)
        {
            Assert.Contains(fragment, output, StringComparison.Ordinal);
        }

        var apps = await _fleet.GetJsonAsync("get", "apps");
        Assert.Empty(apps["items"]!.AsArray());
    }

    [Fact]
    public async Task Apply_ARouteAnotherAppServesOnTheSameNodes_IsRefusedNamingIt_UnlessPlacementKeepsThemApart()
    {
        var (code, output) = await _fleet.ClientAsync("apply", "-f", _fleet.WriteManifest("hello.yaml", Fleet.HelloApp));
        Assert.True(code == 0, output);
        var same = Fleet.HelloApp.Replace("name: hello", "name: samehello", StringComparison.Ordinal);

        (code, output) = await _fleet.ClientAsync("apply", "-f", _fleet.WriteManifest("same.yaml", same));
        Assert.Equal(1, code);
        Assert.Contains("same.yaml (document 1): spec.triggers.http.route: route /hello is already served by app 'hello' on nodes both apps can run on", output, StringComparison.Ordinal);
        Assert.Equal(["hello"], (await _fleet.GetJsonAsync("get", "apps"))["items"]!.AsArray().Select(a => (string)a!["metadata"]!["name"]!));

        // Placement that keeps them on different nodes (site a and site b) makes it fine: applied
        // together, the new placement of hello counts, not the stored one.
        const string SiteA = "\n  placement:\n    nodeSelector:\n      site: a";
        (code, output) = await _fleet.ClientAsync("apply", "-f", _fleet.WriteManifest("apart.yaml",
            Fleet.HelloApp + SiteA + "\n---\n" + same + SiteA.Replace("site: a", "site: b", StringComparison.Ordinal)));
        Assert.True(code == 0, output);
        Assert.Contains("application.outpost.dev/samehello created", output, StringComparison.Ordinal);

        // Two new apps on one route in one apply: refused, each naming the other, nothing applied.
        (code, output) = await _fleet.ClientAsync("apply", "-f", _fleet.WriteManifest("twins.yaml",
            Fleet.HelloApp.Replace("name: hello", "name: twin-1", StringComparison.Ordinal).Replace("/hello", "/twins", StringComparison.Ordinal) + "\n---\n"
            + Fleet.HelloApp.Replace("name: hello", "name: twin-2", StringComparison.Ordinal).Replace("/hello", "/twins", StringComparison.Ordinal)));
        Assert.Equal(1, code);
        Assert.Contains("already served by app 'twin-2'", output, StringComparison.Ordinal);
        Assert.Contains("already served by app 'twin-1'", output, StringComparison.Ordinal);
        Assert.Equal(["hello", "samehello"], (await _fleet.GetJsonAsync("get", "apps"))["items"]!.AsArray().Select(a => (string)a!["metadata"]!["name"]!).Order(StringComparer.Ordinal));
    }

    [Fact]
    public async Task Apply_InvalidYaml_NamesTheFileAndLine()
    {
        var path = _fleet.WriteManifest("broken.yaml", "apiVersion: outpost.dev/v1\nkind: [Application\n");

        var (code, output) = await _fleet.ClientAsync("apply", "-f", path);

        Assert.NotEqual(0, code);
        Assert.Contains("broken.yaml", output, StringComparison.Ordinal);
        Assert.Contains("invalid YAML at line", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task UnknownFlag_FailsWithNonZeroExit()
    {
        var (code, output) = await _fleet.ClientAsync("get", "nodes", "--colour", "red");

        Assert.NotEqual(0, code);
        Assert.Contains("--colour", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Api_RejectsModulePathWithAHint()
    {
        // A manifest sent straight to the API cannot carry a local path.
        using var request = new HttpRequestMessage(HttpMethod.Post, _fleet.ServerUrl + "/apis/outpost.dev/v1/applications")
        {
            Content = new StringContent("""{"apiVersion":"outpost.dev/v1","kind":"Application","metadata":{"name":"p"},"spec":{"module":{"path":"x.wasm"}}}""",
                System.Text.Encoding.UTF8, "application/json"),
        };
        using var response = await _fleet.ApiSendAsync(request);
        var status = System.Text.Json.Nodes.JsonNode.Parse(await response.Content.ReadAsStringAsync())!;

        Assert.Equal(422, (int)response.StatusCode);
        Assert.Equal("Status", (string?)status["kind"]);
        Assert.Equal("Invalid", (string?)status["reason"]);
        Assert.Equal("spec.module.path", (string?)status["details"]!["causes"]![0]!["field"]);
        Assert.Contains("outpost push", (string?)status["message"], StringComparison.Ordinal);
    }
}
