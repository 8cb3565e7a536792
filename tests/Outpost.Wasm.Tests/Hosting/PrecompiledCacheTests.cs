using System.Text;
using Outpost.Core.Resources;
using Outpost.Wasm.Hosting;
using Outpost.Wasm.Wagi;

namespace Outpost.Wasm.Tests.Hosting;

public sealed class PrecompiledCacheTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("outpost-cwasm-").FullName;
    private readonly byte[] _hello = File.ReadAllBytes(Path.Combine(AppContext.BaseDirectory, "Modules", "hello.wasm"));

    private WasmHost NewHost() => new(new WasmHostOptions { MaxInstances = 4, CacheDir = _dir });

    internal static string Body(WasmHost host, WasmModule module) => Encoding.UTF8.GetString(new WagiRunner(host).Handle(module,
        new WagiRequest { Method = "GET", Path = "/hello", Route = "/hello" }, new Dictionary<string, string> { ["OUTPOST_NODE_NAME"] = "edge" }, new AppLimits()).Response.Body.Span);

    [Fact]
    public void SecondHost_LoadsFromCacheWithoutTheWasmBytes()
    {
        var digest = Digest.Compute(_hello);
        using (var first = NewHost())
        using (var compiled = first.Load("hello", digest, () => _hello))
        {
            Assert.False(compiled.FromCache);
        }

        using var second = NewHost();
        using var cached = second.Load("hello", digest, () => throw new InvalidOperationException("must not read the .wasm: the cache has it"));

        Assert.True(cached.FromCache);
        Assert.Contains("hello from edge", Body(second, cached), StringComparison.Ordinal);
        Assert.True(File.Exists(Path.Combine(_dir, WasmHost.WasmtimeVersion, Digest.ToFileName(digest) + ".cwasm")));
    }

    [Fact]
    public void CorruptCacheEntry_IsRecompiled()
    {
        var digest = Digest.Compute(_hello);
        var path = Path.Combine(_dir, WasmHost.WasmtimeVersion, Digest.ToFileName(digest) + ".cwasm");
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllText(path, "not a compiled module");

        using var host = NewHost();
        using var module = host.Load("hello", digest, () => _hello);

        Assert.False(module.FromCache);
        Assert.Contains("hello from edge", Body(host, module), StringComparison.Ordinal);
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);
}
