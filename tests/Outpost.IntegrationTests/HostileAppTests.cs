using System.Net;

namespace Outpost.IntegrationTests;

/// <summary>Hostile apps on a real agent fail their own requests; a healthy app beside them keeps serving.</summary>
public sealed class HostileAppTests
{
    private static readonly Dictionary<string, string> Modules = new()
    {
        ["loop"] = """(module (memory (export "memory") 1) (func (export "_start") (loop $l (br $l))))""",
        ["bomb"] = """(module (memory (export "memory") 1) (func (export "_start") (loop $g (br_if $g (i32.ne (memory.grow (i32.const 16)) (i32.const -1)))) unreachable))""",
        ["deep"] = """(module (memory (export "memory") 1) (func $f (param i32) (result i32) (i32.add (call $f (i32.add (local.get 0) (i32.const 1))) (i32.const 1))) (func (export "_start") (drop (call $f (i32.const 0)))))""",
        ["trap"] = """(module (memory (export "memory") 1) (func (export "_start") unreachable))""",
        ["flood"] = """(module (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32))) (memory (export "memory") 2) (func (export "_start") (local $i i32) (i32.store (i32.const 0) (i32.const 1024)) (i32.store (i32.const 4) (i32.const 65536)) (loop $l (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))) (local.set $i (i32.add (local.get $i) (i32.const 1))) (br_if $l (i32.lt_u (local.get $i) (i32.const 1600))))))""",
    };

    /// <summary>
    /// Long enough that all twelve requests at the looping app reach its gate while the first
    /// four still run, however slowly a loaded machine sends them (the others fail at once and
    /// get a timeout nothing on a slow machine comes near).
    /// </summary>
    private const int LoopTimeoutMs = 5000;

    [Fact]
    public async Task HostileApps_FailTheirOwnRequests_WhileAHealthyAppKeepsServing()
    {
        await using var fleet = new Fleet();
        await fleet.StartServerAsync();
        var token = await fleet.CreateJoinTokenAsync();
        var (agent, gateway) = await fleet.StartAgentAsync("edge-1", token);

        var yaml = new System.Text.StringBuilder(Fleet.HelloApp);
        Directory.CreateDirectory(Path.Combine(fleet.Root, "manifests"));
        foreach (var (name, wat) in Modules)
        {
            File.WriteAllBytes(Path.Combine(fleet.Root, "manifests", $"{name}.wasm"), Wasmtime.Module.ConvertText(wat));
            yaml.Append($"""

                ---
                apiVersion: outpost.dev/v1
                kind: Application
                metadata:
                  name: {name}
                spec:
                  module:
                    path: {name}.wasm
                  triggers:
                    http:
                      route: /{name}
                  limits:
                    timeoutMs: {(name == "loop" ? LoopTimeoutMs : 10_000)}
                    memoryMiB: 16
                    maxConcurrency: 4
                    maxResponseBytes: 1048576
                """);
        }

        var (code, output) = await fleet.ClientAsync("apply", "-f", fleet.WriteManifest("all.yaml", yaml.ToString()));
        Assert.True(code == 0, output);
        await Fleet.WaitForStatusAsync(gateway + "/hello", HttpStatusCode.OK, Fleet.Patience);
        await Fleet.WaitForStatusAsync(gateway + "/trap", HttpStatusCode.InternalServerError, Fleet.Patience);

        // Twelve requests at the looping app (4 run, 4 queue, 4 are turned away) and one at
        // each other hostile app, while a steady stream goes to the healthy one.
        using var client = new HttpClient { Timeout = Fleet.Patience };
        var hostile = Enumerable.Range(0, 12).Select(_ => client.GetAsync(gateway + "/loop"))
            .Concat(new[] { "bomb", "deep", "trap", "flood" }.Select(n => client.GetAsync($"{gateway}/{n}"))).ToList();
        var healthy = new List<HttpStatusCode>();
        var watch = System.Diagnostics.Stopwatch.StartNew();
        while (!hostile.All(t => t.IsCompleted) && watch.Elapsed < Fleet.Patience)
        {
            using var response = await client.GetAsync(gateway + "/hello");
            healthy.Add(response.StatusCode);
        }

        var responses = await Task.WhenAll(hostile);
        var loop = responses.Take(12).Select(r => r.StatusCode).ToList();
        Assert.All(loop, s => Assert.True(s is HttpStatusCode.GatewayTimeout or HttpStatusCode.ServiceUnavailable, $"loop answered {s}"));
        Assert.Contains(HttpStatusCode.GatewayTimeout, loop);
        Assert.Contains(HttpStatusCode.ServiceUnavailable, loop);
        Assert.Equal("1", responses.First(r => r.StatusCode == HttpStatusCode.ServiceUnavailable).Headers.RetryAfter?.ToString());
        Assert.Equal([HttpStatusCode.InternalServerError, HttpStatusCode.InternalServerError, HttpStatusCode.InternalServerError, HttpStatusCode.InternalServerError],
            responses.Skip(12).Select(r => r.StatusCode));
        Assert.NotEmpty(healthy);
        Assert.All(healthy, s => Assert.Equal(HttpStatusCode.OK, s));

        // The reasons are in the agent's log, and the agent is still up.
        await agent.WaitForOutputAsync($"timed out after {LoopTimeoutMs} ms");
        await agent.WaitForOutputAsync("StackOverflow");
        await agent.WaitForOutputAsync("maxResponseBytes");
        Assert.False(agent.HasExited);
    }

    [Fact]
    public async Task ModuleImportingWhatTheHostLacks_IsRejectedAtApply_NamingTheImport()
    {
        await using var fleet = new Fleet();
        await fleet.StartServerAsync();
        Directory.CreateDirectory(Path.Combine(fleet.Root, "manifests"));
        File.WriteAllBytes(Path.Combine(fleet.Root, "manifests", "sock.wasm"), Wasmtime.Module.ConvertText(
            """(module (import "env" "open_socket" (func (result i32))) (memory (export "memory") 1) (func (export "_start")))"""));

        var (code, output) = await fleet.ClientAsync("apply", "-f", fleet.WriteManifest("sock.yaml", """
            apiVersion: outpost.dev/v1
            kind: Application
            metadata:
              name: sock
            spec:
              module:
                path: sock.wasm
            """));

        Assert.NotEqual(0, code);
        Assert.Contains("sock.yaml (document 1): spec.module.path", output, StringComparison.Ordinal);
        Assert.Contains("env.open_socket", output, StringComparison.Ordinal);
        Assert.Empty((await fleet.GetJsonAsync("get", "apps"))["items"]!.AsArray());
    }
}
