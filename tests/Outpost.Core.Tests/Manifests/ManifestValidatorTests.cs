using Outpost.Core.Manifests;

namespace Outpost.Core.Tests.Manifests;

public sealed class ManifestValidatorTests
{
    private static IReadOnlyList<FieldError> Validate(string yaml, bool allowPath = true) =>
        ManifestValidator.Validate(YamlManifestReader.Read(yaml, "t.yaml")[0].Body, allowPath);

    private const string Valid = """
        apiVersion: outpost.dev/v1
        kind: Application
        metadata:
          name: hello
          labels: {app: hello}
        spec:
          module: {path: hello.wasm}
          triggers: {http: {route: /hello}}
          env: {GREETING: hi}
          capabilities: [log]
          limits: {memoryMiB: 16, timeoutMs: 2000}
          placement: {nodeSelector: {site: a}}
        """;

    [Fact]
    public void Valid_HasNoErrors() => Assert.Empty(Validate(Valid));

    [Theory]
    [InlineData("[log, {http-out: [temps.mesh, api.example.com, localhost]}]", null, null)]
    [InlineData("[http-out]", "spec.capabilities[0]", "needs its allow-list")]
    [InlineData("[{http-out: []}]", "spec.capabilities[0].http-out", "non-empty list")]
    [InlineData("[{http-out: temps.mesh}]", "spec.capabilities[0].http-out", "non-empty list")]
    [InlineData("[{http-out: [\"http://api.example.com\"]}]", "spec.capabilities[0].http-out[0]", "not a host name")]
    [InlineData("[{http-out: [\"api.example.com:443\"]}]", "spec.capabilities[0].http-out[0]", "not a host name")]
    [InlineData("[{http-out: [Api.Example.com]}]", "spec.capabilities[0].http-out[0]", "not a host name")]
    [InlineData("[{http-out: [10.0.0.1]}]", "spec.capabilities[0].http-out[0]", "not a host name")]
    [InlineData("[{http-out: [a.temps.mesh]}]", "spec.capabilities[0].http-out[0]", "not a host name")]
    [InlineData("[{kv: [x]}]", "spec.capabilities[0]", "must be `http-out: [HOST, ...]`")]
    public void HttpOut_TakesAnAllowListOfHostNames_NamingTheFieldOfABadOne(string capabilities, string? field, string? message)
    {
        var errors = Validate(Valid.Replace("capabilities: [log]", "capabilities: " + capabilities, StringComparison.Ordinal));

        if (field is null)
        {
            Assert.Empty(errors);
        }
        else
        {
            Assert.Contains(errors, e => e.Field == field && e.Message.Contains(message!, StringComparison.Ordinal));
        }
    }

    [Theory]
    [InlineData("expose: {service: temps, port: 8080, clients: {nodeSelector: {trusted: \"yes\"}}}", null, null)]
    [InlineData("expose: {service: temps, clients: {}}", "spec.expose.clients", "expected an object with nodeSelector")]
    [InlineData("expose: {service: temps, clients: [edge-1]}", "spec.expose.clients", "expected an object with nodeSelector")]
    [InlineData("expose: {service: temps, clients: {nodeSelector: {site: a}, nodes: [x]}}", "spec.expose.clients.nodes", "unknown field")]
    [InlineData("expose: {service: temps, clients: {nodeSelector: {\"bad key!\": a}}}", "spec.expose.clients.nodeSelector", "")]
    public void ExposeClients_IsANodeSelector(string expose, string? field, string? message)
    {
        var errors = Validate(Valid.Replace("  env:", $"  {expose}\n  env:", StringComparison.Ordinal));

        if (field is null)
        {
            Assert.Empty(errors);
            var spec = Core.Resources.ApplicationSpec.FromJson(YamlManifestReader.Read(Valid.Replace("  env:", $"  {expose}\n  env:", StringComparison.Ordinal), "t.yaml")[0].Body["spec"]!.AsObject());
            Assert.Equal("yes", spec.Expose!.Clients!["trusted"]);
        }
        else
        {
            Assert.Contains(errors, e => e.Field.StartsWith(field, StringComparison.Ordinal) && e.Message.Contains(message!, StringComparison.Ordinal));
        }
    }

    [Theory]
    [InlineData("{selector: {app: temps}, port: 8080, clients: {nodeSelector: {site: a}}, ingress: {path: /temps}}", null, null)]
    [InlineData("{port: 8080}", "spec.selector", "required")]
    [InlineData("{selector: {app: temps}, port: 0}", "spec.port", "expected a port number")]
    [InlineData("{selector: {app: temps}, ingress: {path: shop}}", "spec.ingress.path", "is not an ingress path")]
    [InlineData("{selector: {app: temps}, service: temps}", "spec.service", "unknown field")]
    [InlineData("{selector: {app: temps}, clients: {}}", "spec.clients", "expected an object with nodeSelector")]
    public void NetworkService_IsValidated_NamingTheField(string spec, string? field, string? message)
    {
        var errors = ManifestValidator.Validate(YamlManifestReader.Read($"apiVersion: outpost.dev/v1\nkind: NetworkService\nmetadata: {{name: temps}}\nspec: {spec}\n", "t.yaml")[0].Body, allowModulePath: true);

        if (field is null)
        {
            Assert.Empty(errors);
        }
        else
        {
            Assert.Contains(errors, e => e.Field == field && e.Message.Contains(message!, StringComparison.Ordinal));
        }
    }

    [Fact]
    public void NetworkService_NameMustBeAServiceName() =>
        Assert.Contains(ManifestValidator.Validate(YamlManifestReader.Read("apiVersion: outpost.dev/v1\nkind: NetworkService\nmetadata: {name: Temps.Service}\nspec: {selector: {app: t}}\n", "t.yaml")[0].Body, allowModulePath: true),
            e => e.Field == "metadata.name");

    [Fact]
    public void HttpOut_IsReadIntoTheSpec_WithTheMeshServicesItCalls()
    {
        var body = YamlManifestReader.Read(Valid.Replace("capabilities: [log]", "capabilities: [log, {http-out: [temps.mesh, api.example.com]}]", StringComparison.Ordinal), "t.yaml")[0].Body;

        var spec = Core.Resources.ApplicationSpec.FromJson(body["spec"]!.AsObject());

        Assert.Equal(["log", "http-out"], spec.Capabilities);
        Assert.Equal(["temps.mesh", "api.example.com"], spec.HttpOut);
        Assert.Equal(["temps"], spec.MeshServicesCalled);
    }

    [Fact]
    public void EveryStringField_HasAMaximum_NamedWithTheFieldAndShownClipped()
    {
        var route = "/" + new string('r', ManifestValidator.MaxRouteLength);
        var errors = Validate(Valid.Replace("route: /hello", "route: " + route, StringComparison.Ordinal)
            .Replace("GREETING: hi", "GREETING: " + new string('g', ManifestValidator.MaxEnvValue + 1), StringComparison.Ordinal)
            .Replace("app: hello}", "app: hello, " + new string('k', 300) + ": v}", StringComparison.Ordinal));

        var routeError = Assert.Single(errors, e => e.Field == "spec.triggers.http.route");
        Assert.Contains($"is {route.Length} characters long: at most {ManifestValidator.MaxRouteLength}", routeError.Message, StringComparison.Ordinal);
        Assert.True(routeError.Message.Length < 200, "the message repeats the whole route");
        Assert.Contains(errors, e => e.Field == "spec.env.GREETING" && e.Message.Contains($"at most {ManifestValidator.MaxEnvValue}", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.Field.StartsWith("metadata.labels.kkkk", StringComparison.Ordinal) && e.Field.Length < 60);
        Assert.Empty(Validate(Valid.Replace("route: /hello", "route: /" + new string('r', ManifestValidator.MaxRouteLength - 1), StringComparison.Ordinal)));
    }

    [Theory]
    [InlineData("readinessProbe: {path: /hello/ready, expectStatus: 200}", null, null)]
    [InlineData("readinessProbe: {path: /other}", "spec.readinessProbe.path", "not under the app's route")]
    [InlineData("readinessProbe: {path: /hello, expectStatus: 700}", "spec.readinessProbe.expectStatus", "100 to 599")]
    [InlineData("readinessProbe: {expectStatus: 200}", "spec.readinessProbe.path", "required")]
    [InlineData("readinessProbe: {path: /hello, timeout: 1}", "spec.readinessProbe.timeout", "unknown field")]
    public void ReadinessProbe_IsValidatedAgainstTheRoute(string probe, string? field, string? message)
    {
        var errors = Validate(Valid.Replace("  env:", $"  {probe}\n  env:", StringComparison.Ordinal));

        if (field is null)
        {
            Assert.Empty(errors);
        }
        else
        {
            Assert.Contains(errors, e => e.Field == field && e.Message.Contains(message!, StringComparison.Ordinal));
        }
    }

    [Fact]
    public void UnknownSpecField_IsNamed()
    {
        var errors = Validate(Valid.Replace("  env:", "  enviroment: {A: b}\n  env:", StringComparison.Ordinal));

        Assert.Contains(errors, e => e.Field == "spec.enviroment" && e.Message.Contains("unknown field", StringComparison.Ordinal));
    }

    [Fact]
    public void NumberWhereStringExpected_SaysToQuote()
    {
        var errors = Validate(Valid.Replace("GREETING: hi", "PORT: 8080", StringComparison.Ordinal));

        Assert.Contains(errors, e => e.Field == "spec.env.PORT" && e.Message.Contains("quote it", StringComparison.Ordinal));
    }

    [Fact]
    public void PathAndDigestTogether_IsAnError()
    {
        var errors = Validate(Valid.Replace("{path: hello.wasm}", "{path: hello.wasm, digest: \"sha256:" + new string('a', 64) + "\"}", StringComparison.Ordinal));

        Assert.Contains(errors, e => e.Field == "spec.module" && e.Message.Contains("not both", StringComparison.Ordinal));
    }

    [Fact]
    public void ModulePath_OnTheServer_PointsAtPush()
    {
        var errors = Validate(Valid, allowPath: false);

        var error = Assert.Single(errors);
        Assert.Equal("spec.module.path", error.Field);
        Assert.Contains("outpost push", error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("sha256:abc")]
    [InlineData("md5:0123")]
    public void MalformedDigest_IsNamed(string digest)
    {
        var errors = Validate(Valid.Replace("{path: hello.wasm}", $"{{digest: \"{digest}\"}}", StringComparison.Ordinal));

        Assert.Contains(errors, e => e.Field == "spec.module.digest");
    }

    [Theory]
    [InlineData("hello")]
    [InlineData("/_outpost/x")]
    public void BadRoute_IsNamed(string route)
    {
        var errors = Validate(Valid.Replace("route: /hello", $"route: \"{route}\"", StringComparison.Ordinal));

        Assert.Contains(errors, e => e.Field == "spec.triggers.http.route");
    }

    [Fact]
    public void UnknownCapability_ListsTheKnownOnes()
    {
        var errors = Validate(Valid.Replace("[log]", "[log, teleport]", StringComparison.Ordinal));

        var error = Assert.Single(errors);
        Assert.Equal("spec.capabilities[1]", error.Field);
        Assert.Contains("kv", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Bucket_ValidatesDirectionAndPolicy_AndDefaultsEverything()
    {
        const string Bucket = "apiVersion: outpost.dev/v1\nkind: Bucket\nmetadata:\n  name: counters\n";

        Assert.Empty(Validate(Bucket));
        Assert.Empty(Validate(Bucket + "spec:\n  direction: two-way\n  conflictPolicy: cloud-wins\n"));
        var errors = Validate(Bucket + "spec:\n  direction: sideways\n  conflictPolicy: loudest\n");
        Assert.Contains(errors, e => e.Field == "spec.direction" && e.Message.Contains("two-way", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.Field == "spec.conflictPolicy" && e.Message.Contains("edge-wins", StringComparison.Ordinal));
    }

    [Fact]
    public void WrongApiVersion_IsNamed()
    {
        var errors = Validate(Valid.Replace("outpost.dev/v1", "v1", StringComparison.Ordinal));

        Assert.Contains(errors, e => e.Field == "apiVersion");
    }
}
