using Outpost.Core.Manifests;

namespace Outpost.Core.Tests.Manifests;

public sealed class RuntimeClassTests
{
    [Fact]
    public void ARuntimeClass_TakesAWasmOrRuncHandlerAtTheTopLevel()
    {
        static List<string> Errors(string handler) =>
            [.. ManifestValidator.Validate(YamlManifestReader.Read($"apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata: {{name: rc}}\n{handler}", "rc.yaml").Single().Body, allowModulePath: true)
                .Select(e => $"{e.Field}: {e.Message}")];

        Assert.Empty(Errors("handler: wasmedge"));
        Assert.Empty(Errors("handler: wasm"));
        Assert.Empty(Errors("handler: runc"));
        Assert.Contains("handler: unknown handler 'crun'; Outpost runs WebAssembly and containers: use one of wasmedge, wasmtime, wasm, runc", Errors("handler: crun"));
        Assert.Contains(Errors("handler: process"), e => e.StartsWith("handler: handler 'process' (native processes) is not available", StringComparison.Ordinal));
        Assert.Contains(Errors("spec: {handler: wasm}"), e => e.StartsWith("spec:", StringComparison.Ordinal));
        Assert.Contains(Errors(""), e => e.StartsWith("handler:", StringComparison.Ordinal));
    }

    private static List<string> AppErrors(string spec) =>
        [.. ManifestValidator.Validate(YamlManifestReader.Read($"apiVersion: outpost.dev/v1\nkind: Application\nmetadata: {{name: app}}\nspec: {spec}", "app.yaml").Single().Body, allowModulePath: true)
            .Select(e => $"{e.Field}: {e.Message}")];

    [Fact]
    public void AContainerApp_NamesAnImage_AndTakesOnlyWhatContainersHave()
    {
        Assert.Empty(AppErrors("{image: 'hello:v1', port: 8080, command: [/hello], args: [-v], restartPolicy: OnFailure, limits: {memoryMiB: 32, cpuMillis: 500}, triggers: {http: {route: /c}}}"));
        Assert.Empty(AppErrors("{runtime: container, image: 'registry.local:5000/team/hello@sha256:" + new string('a', 64) + "'}"));
        Assert.Contains("spec.image: required for a container app: an image pushed to the server's registry, as NAME:TAG or NAME@sha256:...", AppErrors("{runtime: container}"));
        Assert.Contains("spec.module: a container app runs spec.image, not a module: remove spec.module (or make it a Wasm app without spec.image)", AppErrors("{image: hello, module: {path: x.wasm}}"));
        Assert.Contains("spec.image: 'Hello:v1': 'Hello' is not a repository name (lowercase [a-z0-9] components joined by '.', '_', '__' or '-', separated by '/')", AppErrors("{image: 'Hello:v1'}"));
        Assert.Contains("spec.triggers.timer: container apps take http triggers only; a timer trigger runs Wasm apps", AppErrors("{image: hello, triggers: {timer: {every: 1s}}}"));
        Assert.Contains("spec.restartPolicy: unknown restart policy 'Sometimes'; expected one of Always, OnFailure, Never", AppErrors("{image: hello, restartPolicy: Sometimes}"));
        Assert.Contains(AppErrors("{image: hello, port: 70000}"), e => e.StartsWith("spec.port: expected a TCP port (1-65535) the container listens on, got ", StringComparison.Ordinal) && e.Contains("70000", StringComparison.Ordinal));
        Assert.Contains("spec.capabilities: capabilities grant Wasm host functions; a container app has none: remove spec.capabilities", AppErrors("{image: hello, capabilities: [kv]}"));
        Assert.Contains("spec.port: only container apps have spec.port: set spec.runtime: container (or a RuntimeClass with handler runc) and spec.image", AppErrors("{module: {path: x.wasm}, port: 80}"));
    }
}
