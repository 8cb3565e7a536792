using Outpost.Core.Manifests;

namespace Outpost.Core.Tests.Manifests;

public sealed class RuntimeClassTests
{
    [Fact]
    public void ARuntimeClass_TakesAWasmHandlerAtTheTopLevel()
    {
        static List<string> Errors(string handler) =>
            [.. ManifestValidator.Validate(YamlManifestReader.Read($"apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata: {{name: rc}}\n{handler}", "rc.yaml").Single().Body, allowModulePath: true)
                .Select(e => $"{e.Field}: {e.Message}")];

        Assert.Empty(Errors("handler: wasmedge"));
        Assert.Empty(Errors("handler: wasm"));
        Assert.Contains("handler: unknown handler 'runc'; Outpost runs WebAssembly: use one of wasmedge, wasmtime, wasm", Errors("handler: runc"));
        Assert.Contains(Errors("handler: process"), e => e.StartsWith("handler: handler 'process' (native processes) is not available", StringComparison.Ordinal));
        Assert.Contains(Errors("spec: {handler: wasm}"), e => e.StartsWith("spec:", StringComparison.Ordinal));
        Assert.Contains(Errors(""), e => e.StartsWith("handler:", StringComparison.Ordinal));
    }
}
