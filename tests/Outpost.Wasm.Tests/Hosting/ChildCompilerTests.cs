using Outpost.Core.Resources;
using Outpost.Wasm.Hosting;

namespace Outpost.Wasm.Tests.Hosting;

/// <summary>
/// Cache misses compiled by a child process (WasmHostOptions.CompilerCommand). The real child,
/// `outpost wasm compile`, runs in the integration and release-binary tests; here shell scripts
/// play it, to check what the host sends it and how it takes each ending.
/// </summary>
public sealed class ChildCompilerTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("outpost-child-compiler-").FullName;
    private readonly byte[] _hello = File.ReadAllBytes(Path.Combine(AppContext.BaseDirectory, "Modules", "hello.wasm"));

    private WasmHost NewHost(params string[] command) =>
        new(new WasmHostOptions { MaxInstances = 4, CacheDir = Path.Combine(_dir, "cache"), CompilerCommand = command });

    private static string Body(WasmHost host, WasmModule module) => PrecompiledCacheTests.Body(host, module);

    /// <summary>A child that runs <paramref name="script"/> with $out set to its --output and the module read from stdin into $out.in.</summary>
    private static string[] Child(string script) =>
    [
        "/bin/sh", "-c",
        "out=''; while [ $# -gt 0 ]; do [ \"$1\" = --output ] && out=\"$2\"; shift; done; cat > \"$out.in\"; " + script,
        "compiler",
    ];

    [Fact]
    public void AChildThatWritesTheFile_IsLoadedFromIt_AndGetsTheModuleOnStdin()
    {
        // What the real child writes: this engine's precompiled module.
        var precompiled = Path.Combine(_dir, "hello.cwasm");
        using (var compiler = new WasmHost(new WasmHostOptions { MaxInstances = 4 }))
        {
            compiler.CompileToFile("hello", _hello, precompiled);
        }

        var sent = Path.Combine(_dir, "sent.wasm");
        using var host = NewHost(Child($"cp \"$out.in\" '{sent}'; cp '{precompiled}' \"$out\""));
        var digest = Digest.Compute(_hello);
        using var module = host.Load("hello", digest, () => _hello);

        Assert.Equal(_hello, File.ReadAllBytes(sent));
        Assert.Equal((1L, 0L), host.Compiled);
        Assert.Equal(0, host.ChildFailures);
        Assert.Contains("hello from edge", Body(host, module), StringComparison.Ordinal);
        Assert.True(File.Exists(Path.Combine(_dir, "cache", WasmHost.WasmtimeVersion, Digest.ToFileName(digest) + ".cwasm")));
    }

    [Fact]
    public void AComponent_IsCompiledByTheChildToo_AndServesFromWhatItWrote()
    {
        var component = File.ReadAllBytes(Path.Combine(AppContext.BaseDirectory, "Modules", "components", "http-c.wasm"));
        var precompiled = Path.Combine(_dir, "http-c.cwasm");
        using (var compiler = new WasmHost(new WasmHostOptions { MaxInstances = 4 }))
        {
            compiler.CompileToFile("http-c", component, precompiled); // what `outpost wasm compile` writes for a component
        }

        var sent = Path.Combine(_dir, "sent.wasm");
        using var host = NewHost(Child($"cp \"$out.in\" '{sent}'; cp '{precompiled}' \"$out\""));
        using var loaded = host.Components.Load("http-c", Digest.Compute(component), () => component);

        Assert.Equal(component, File.ReadAllBytes(sent));
        Assert.False(loaded.FromCache);
        var outcome = new Outpost.Wasm.Components.ComponentRunner(host.Components).Handle(loaded,
            new Outpost.Wasm.Wagi.WagiRequest { Method = "GET", Path = "/x", Route = "/" }, new AppLimits(), null, []);
        Assert.Equal("hello from a component: GET /x\n", System.Text.Encoding.UTF8.GetString(outcome.Response.Body.Span));
        Assert.True(File.Exists(Path.Combine(_dir, "cache", WasmHost.WasmtimeVersion, Digest.ToFileName(Digest.Compute(component)) + ".cwasm")));
    }

    [Fact]
    public void AModuleTheChildRefuses_IsRejectedWithItsReason_AndNothingIsCached()
    {
        using var host = NewHost(Child("echo \"module 'hello' rejected: import 'env.f' is not provided by the Outpost host\" >&2; exit 3"));

        var error = Assert.Throws<ModuleRejectedException>(() => host.Load("hello", Digest.Compute(_hello), () => _hello));

        Assert.Equal("module 'hello' rejected: import 'env.f' is not provided by the Outpost host", error.Message);
        Assert.Equal((0L, 0L), host.Compiled);
        Assert.Empty(Directory.EnumerateFiles(Path.Combine(_dir, "cache"), "*.cwasm", SearchOption.AllDirectories));
    }

    [Theory]
    [InlineData("kill -9 $$", "exited with code 137")]
    [InlineData("echo 'out of memory' >&2; exit 1", "exited with code 1: out of memory")]
    [InlineData("echo 'not a module' > \"$out\"", "does not load here")]
    public void AChildThatFails_IsSaidAndTheModuleIsCompiledHere(string script, string reason)
    {
        using var host = NewHost(Child(script));

        using var module = host.Load("hello", Digest.Compute(_hello), () => _hello);

        Assert.Equal((0L, 1L), host.Compiled);
        Assert.Equal(1, host.ChildFailures);
        Assert.Contains(reason, host.LastChildFailure, StringComparison.Ordinal);
        Assert.Contains("hello from edge", Body(host, module), StringComparison.Ordinal);
    }

    [Fact]
    public void ACompilerThatCannotStart_IsSaidAndTheModuleIsCompiledHere()
    {
        using var host = NewHost(Path.Combine(_dir, "no-such-outpost"));

        using var module = host.Load("hello", Digest.Compute(_hello), () => _hello);

        Assert.Equal((0L, 1L), host.Compiled);
        Assert.StartsWith("could not start the compiler", host.LastChildFailure, StringComparison.Ordinal);
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);
}
