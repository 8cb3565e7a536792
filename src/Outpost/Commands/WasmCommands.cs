using System.CommandLine;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Outpost.Agent.Apps;
using Outpost.Core.Resources;
using Outpost.Wasm.Components;
using Outpost.Wasm.Host;
using Outpost.Wasm.Hosting;
using Outpost.Wasm.Nn;
using Outpost.Wasm.Wagi;
using Outpost.Wasm.Wasi;

namespace Outpost.Commands;

/// <summary>
/// `outpost wasm`: run a WASI command or serve a WAGI app locally with the node's engine, WASI
/// and limits (the developer's loop, as `wasmtime run` and `spin up` give it), and `compile`,
/// the agent's compiler run as a child process (Outpost.Wasm's ChildCompiler).
/// </summary>
internal static class WasmCommands
{
    public static Command Wasm()
    {
        var name = new Option<string>("--name") { Description = "The module's name, for messages", DefaultValueFactory = _ => "module" };
        var output = new Option<FileInfo>("--output") { Description = "Where to write the precompiled module", Required = true };
        var instances = new Option<int>("--instances") { Description = "The engine's pool slots (as the agent's --max-instances)", DefaultValueFactory = _ => new WasmHostOptions().MaxInstances };
        var maxMemory = new Option<int>("--max-memory-mib") { Description = "The engine's memory ceiling per instance", DefaultValueFactory = _ => new WasmHostOptions().MaxMemoryMiB };
        var maxStack = new Option<int>("--max-stack-bytes") { Description = "The engine's guest stack limit", DefaultValueFactory = _ => new WasmHostOptions().MaxStackBytes };
        var keepResident = new Option<int>("--keep-resident-bytes") { Description = "Linear memory kept resident per pool slot", DefaultValueFactory = _ => new WasmHostOptions().KeepResidentBytes };
        var pooling = new Option<bool>("--pooling") { Description = "Configure the engine with the pooling allocator", DefaultValueFactory = _ => true };
        var compile = new Command("compile",
            "Validate and compile a module read from stdin for this node's engine, and write it precompiled; exits 3 naming what is wrong with a module that cannot run here. The agent runs this itself so that compiling never grows its own memory")
        {
            name, output, instances, maxMemory, maxStack, keepResident, pooling,
        };
        compile.SetAction(result =>
        {
            var options = new WasmHostOptions
            {
                MaxInstances = result.GetValue(instances),
                MaxMemoryMiB = result.GetValue(maxMemory),
                MaxStackBytes = result.GetValue(maxStack),
                KeepResidentBytes = result.GetValue(keepResident),
                UsePooling = result.GetValue(pooling),
            };
            try
            {
                options.Validate();
            }
            catch (ArgumentOutOfRangeException e)
            {
                Console.Error.WriteLine($"outpost wasm compile: {e.Message}");
                return 2;
            }

            using var input = new MemoryStream();
            Console.OpenStandardInput().CopyTo(input);
            using var host = new WasmHost(options);
            try
            {
                host.CompileToFile(result.GetValue(name)!, input.GetBuffer().AsSpan(0, (int)input.Length), result.GetValue(output)!.FullName);
                return 0;
            }
            catch (ModuleRejectedException e)
            {
                Console.Error.WriteLine(e.Message);
                return ChildCompiler.RejectedExitCode;
            }
        });
        return new Command("wasm", "WebAssembly tools of the node's engine") { compile, Run(), Serve() };
    }

    private const string WasiNnCapability = "nn";

    private static readonly Option<string[]> Dirs = new("--dir")
    {
        Description = "A directory the guest may read and write: HOST::GUEST (or HOST, seen at the same path); repeatable",
        AllowMultipleArgumentsPerToken = false,
    };

    private static readonly Option<string[]> ReadOnlyDirs = new("--ro-dir")
    {
        Description = "A directory the guest may only read: HOST::GUEST (or HOST); repeatable",
    };

    private static readonly Option<string[]> Envs = new("--env") { Description = "An environment variable for the guest: K=V; repeatable" };

    private static readonly Option<string[]> Models = new("--model")
    {
        Description = "An ONNX model the guest loads by name through WASI-NN: NAME=FILE; repeatable (needs ONNX Runtime, see docs/ai.md)",
    };

    private static readonly Option<string?> OnnxRuntime = new("--onnxruntime")
    {
        Description = "The ONNX Runtime library to use for WASI-NN (default: libonnxruntime.so next to outpost, else the library path)",
    };

    private static readonly Option<string[]> Configs = new("--config-value")
    {
        Description = "A config value the guest reads with outpost_config_get (capability config): K=V; repeatable",
    };

    private static readonly Option<string[]> HttpOutHosts = new("--http-out")
    {
        Description = "A host the guest may send HTTP requests to (capability http-out); repeatable",
    };

    private static readonly Option<int> TimeoutMs = new("--timeout-ms")
    {
        Description = "Stop the guest after this long, as an app's limits.timeoutMs does",
        DefaultValueFactory = _ => AppLimits.DefaultTimeoutMs,
    };

    private static readonly Option<int> MemoryMiB = new("--memory-mib")
    {
        Description = "The guest's memory limit, as an app's limits.memoryMiB",
        DefaultValueFactory = _ => AppLimits.DefaultMemoryMiB,
    };

    private static Command Run()
    {
        var file = new Argument<FileInfo>("file") { Description = "A WASI command module (.wasm)" };
        var args = new Argument<string[]>("args") { Description = "Arguments for the guest (after --)", Arity = ArgumentArity.ZeroOrMore };
        var command = new Command("run",
            "Run a WASI command locally with the agent's engine, WASI, host functions and limits: stdio is the terminal's, and the guest's exit code is this process's (134 when it traps, 124 when it runs out of time); outpost_log and outpost_publish write to stderr, buckets are in memory")
        {
            file, args, Dirs, ReadOnlyDirs, Envs, Models, OnnxRuntime, Configs, HttpOutHosts, TimeoutMs, MemoryMiB,
        };
        command.SetAction(result =>
        {
            var path = result.GetValue(file)!;
            if (!Prepare(result, path, out var host, out var module, out var component, out var mounts, out var env, out var limits, out var models, out var grant))
            {
                return 2;
            }

            using (host)
            using (module)
            using (component)
            using (mounts)
            using ((WasmLocalServices)grant.Services)
            {
                if (component is not null)
                {
                    return RunComponent(host, component, path, [path.Name, .. result.GetValue(args) ?? []], env, limits, grant);
                }

                using var stdin = Console.OpenStandardInput();
                using var stdout = Console.OpenStandardOutput();
                using var stderr = Console.OpenStandardError();
                var outcome = WasiCommand.Run(host, module!, new WasiCommandOptions
                {
                    Args = [path.Name, .. result.GetValue(args) ?? []],
                    Env = env,
                    Mounts = mounts,
                    Stdin = stdin,
                    Stdout = stdout,
                    Stderr = stderr,
                    Limits = limits,
                    Models = models,
                    Grant = grant,
                });
                foreach (var note in outcome.Notes.Append(outcome.Error).OfType<string>())
                {
                    Console.Error.WriteLine($"outpost wasm run: {path.Name}: {note}");
                }

                return outcome.ExitCode;
            }
        });
        return command;
    }

    private static Command Serve()
    {
        var file = new Argument<FileInfo>("file") { Description = "A WAGI module (.wasm): the request on stdin and in the environment, the response on stdout" };
        var route = new Option<string>("--route") { Description = "The route it answers under", DefaultValueFactory = _ => "/" };
        var listen = new Option<string>("--listen") { Description = "Address and port to listen on (port 0 picks a free one)", DefaultValueFactory = _ => "127.0.0.1:3000" };
        var command = new Command("serve", "Serve a WAGI app locally with the agent's engine, WASI and limits, one fresh instance per request")
        {
            file, route, listen, Dirs, ReadOnlyDirs, Envs, Models, OnnxRuntime, Configs, HttpOutHosts, TimeoutMs, MemoryMiB,
        };
        command.SetAction(async (result, cancellationToken) =>
        {
            var path = result.GetValue(file)!;
            var prefix = result.GetValue(route)!.TrimEnd('/');
            if (!Prepare(result, path, out var host, out var module, out var component, out var mounts, out var env, out var limits, out var models, out var grant))
            {
                return 2;
            }

            using (host)
            using (module)
            using (component)
            using (mounts)
            using ((WasmLocalServices)grant.Services)
            {
                var builder = WebApplication.CreateSlimBuilder();
                builder.Logging.ClearProviders();
                builder.WebHost.UseUrls($"http://{result.GetValue(listen)}");
                await using var app = builder.Build();
                var runner = new WagiRunner(host);
                var components = new ComponentRunner(host.Components);
                var appEnv = new AppEnvironment(env.ToDictionary(p => p.Key, p => p.Value, StringComparer.Ordinal));
                var routeName = prefix.Length == 0 ? "/" : prefix;
                app.Run(async context =>
                {
                    var requestPath = context.Request.Path.Value ?? "/";
                    if (prefix.Length > 0 && !(requestPath == prefix || requestPath.StartsWith(prefix + "/", StringComparison.Ordinal)))
                    {
                        await WasmAppInstance.WriteTextAsync(context, 404, $"404 not found: {path.Name} answers under {prefix}\n");
                        return;
                    }

                    var body = await WasmAppInstance.ReadBodyAsync(context, 16 * 1024 * 1024);
                    if (body is null)
                    {
                        await WasmAppInstance.WriteTextAsync(context, 413, "413 request body too large\n");
                        return;
                    }

                    var request = WasmAppInstance.ToWagiRequest(context, routeName, requestPath, body.Value);
                    var outcome = await Task.Run(() => component is not null
                        ? components.Handle(component, request, limits, grant, env)
                        : runner.Handle(module!, request, appEnv, limits, grant, mounts, models), context.RequestAborted);
                    if (outcome.Stderr is { } stderr)
                    {
                        Console.Error.Write(stderr.EndsWith('\n') ? stderr : stderr + "\n");
                    }

                    foreach (var line in outcome.Notes.Prepend(outcome.Error).OfType<string>())
                    {
                        Console.Error.WriteLine($"{context.Request.Method} {requestPath}: {line}");
                    }

                    await WasmAppInstance.WriteAsync(context, outcome.Response);
                });
                await app.StartAsync(cancellationToken);
                var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
                Console.WriteLine($"Serving {path.Name} at {address}{(prefix.Length == 0 ? "/" : prefix)}");
                // Until Ctrl+C or SIGTERM (which the web host's lifetime takes, and turns into stopping).
                using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, app.Lifetime.ApplicationStopping);
                try
                {
                    await Task.Delay(Timeout.Infinite, stop.Token);
                }
                catch (OperationCanceledException)
                {
                    // Stop serving.
                }

                await app.StopAsync(CancellationToken.None);
                return 0;
            }
        });
        return command;
    }

    /// <summary>Runs a command component as a program: stdin (when not a terminal) in, its stdout and stderr out, its exit code.</summary>
    private static int RunComponent(WasmHost host, WasmComponent component, FileInfo path, IReadOnlyList<string> arguments, List<KeyValuePair<string, string>> env, AppLimits limits, HostGrant grant)
    {
        using var input = new MemoryStream();
        if (Console.IsInputRedirected)
        {
            using var stdin = Console.OpenStandardInput();
            stdin.CopyTo(input);
        }

        var outcome = new ComponentRunner(host.Components).RunCommand(component, arguments, env, input.ToArray(), limits, grant);
        using (var stdout = Console.OpenStandardOutput())
        {
            stdout.Write(outcome.Stdout.Span);
        }

        using (var stderr = Console.OpenStandardError())
        {
            stderr.Write(outcome.Stderr.Span);
        }

        foreach (var note in outcome.Notes.Append(outcome.Error).OfType<string>())
        {
            Console.Error.WriteLine($"outpost wasm run: {path.Name}: {note}");
        }

        return outcome.ExitCode;
    }

    /// <summary>Compiles the module and opens its directories as the agent would; false (with the reason on stderr) when it cannot run.</summary>
    private static bool Prepare(ParseResult result, FileInfo file, out WasmHost host, out WasmModule? module, out WasmComponent? component, out WasiMounts? mounts,
        out List<KeyValuePair<string, string>> env, out AppLimits limits, out Dictionary<string, NnModel> models, out HostGrant grant)
    {
        var name = $"outpost wasm {result.CommandResult.Command.Name}";
        host = null!;
        module = null;
        component = null;
        mounts = null;
        env = [];
        grant = null!;
        limits = new AppLimits { TimeoutMs = result.GetValue(TimeoutMs), MemoryMiB = result.GetValue(MemoryMiB) };
        models = new Dictionary<string, NnModel>(StringComparer.Ordinal);
        foreach (var pair in result.GetValue(Models) ?? [])
        {
            var equals = pair.IndexOf('=', StringComparison.Ordinal);
            var modelFile = equals > 0 ? pair[(equals + 1)..] : "";
            if (equals <= 0 || !File.Exists(modelFile))
            {
                Console.Error.WriteLine(equals <= 0 ? $"{name}: --model '{pair}' is not NAME=FILE" : $"{name}: model file '{modelFile}' does not exist");
                return false;
            }

            var bytes = File.ReadAllBytes(modelFile);
            models[pair[..equals]] = new NnModel(Digest.Compute(bytes), () => bytes);
        }

        foreach (var pair in result.GetValue(Envs) ?? [])
        {
            var equals = pair.IndexOf('=', StringComparison.Ordinal);
            if (equals <= 0)
            {
                Console.Error.WriteLine($"{name}: --env '{pair}' is not K=V");
                return false;
            }

            env.Add(new(pair[..equals], pair[(equals + 1)..]));
        }

        if (limits.TimeoutMs < 1 || limits.MemoryMiB < 1)
        {
            Console.Error.WriteLine($"{name}: --timeout-ms and --memory-mib must be positive");
            return false;
        }

        var wanted = new List<WasiMount>();
        foreach (var (spec, readOnly) in (result.GetValue(Dirs) ?? []).Select(d => (d, false)).Concat((result.GetValue(ReadOnlyDirs) ?? []).Select(d => (d, true))))
        {
            var split = spec.Split("::", 2);
            var hostPath = split[0];
            var guestPath = split.Length == 2 ? split[1] : split[0];
            if (hostPath.Length == 0 || guestPath.Length == 0)
            {
                Console.Error.WriteLine($"{name}: --dir '{spec}' is not HOST::GUEST");
                return false;
            }

            if (!Directory.Exists(hostPath))
            {
                Console.Error.WriteLine($"{name}: directory '{hostPath}' does not exist");
                return false;
            }

            wanted.Add(new WasiMount(guestPath, Path.GetFullPath(hostPath), readOnly));
        }

        if (!file.Exists)
        {
            Console.Error.WriteLine($"{name}: {file.FullName} does not exist");
            return false;
        }

        // WASI-NN works when ONNX Runtime is here; a module importing it is refused, saying so, when not.
        var library = OnnxRuntimeLibrary.Locate(result.GetValue(OnnxRuntime));
        var onnx = models.Count > 0 ? OnnxRuntimeLibrary.Load(library ?? result.GetValue(OnnxRuntime)) : new OnnxRuntimeStatus(library is not null, null, null);
        if (!onnx.Available && models.Count > 0)
        {
            Console.Error.WriteLine($"{name}: --model needs ONNX Runtime: {onnx.Problem}");
            return false;
        }

        var config = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var pair in result.GetValue(Configs) ?? [])
        {
            var equals = pair.IndexOf('=', StringComparison.Ordinal);
            if (equals <= 0)
            {
                Console.Error.WriteLine($"{name}: --config-value '{pair}' is not K=V");
                return false;
            }

            config[pair[..equals]] = pair[(equals + 1)..];
        }

        // Every host function an app can be granted, served locally (see WasmLocalServices).
        var httpOut = (result.GetValue(HttpOutHosts) ?? []).Select(h => h.ToLowerInvariant()).ToHashSet(StringComparer.Ordinal);
        var capabilities = new HashSet<string>(["log", "config", "secrets", "kv", "publish", "clock"], StringComparer.Ordinal);
        if (httpOut.Count > 0)
        {
            capabilities.Add("http-out");
        }

        if (onnx.Available)
        {
            capabilities.Add(WasiNnCapability);
        }

        grant = new HostGrant(Path.GetFileNameWithoutExtension(file.Name), capabilities, new WasmLocalServices(config, Console.Error)) { HttpOut = httpOut };
        host = new WasmHost(new WasmHostOptions
        {
            MaxInstances = 64,
            MaxMemoryMiB = Math.Max(limits.MemoryMiB, new WasmHostOptions().MaxMemoryMiB),
            Models = onnx.Available ? new NnSessions(library) : null,
        });
        try
        {
            var bytes = File.ReadAllBytes(file.FullName);
            if (ComponentHost.IsComponent(bytes))
            {
                // A component: WASI 0.2 and Outpost's WIT interfaces, no directories (components get none).
                if (wanted.Count > 0 || models.Count > 0)
                {
                    throw new ModuleRejectedException($"{file.Name} is a component: --dir, --ro-dir and --model are for core modules (components get no directories, and no WASI-NN)");
                }

                component = host.Components.Load(file.Name, Digest.Compute(bytes), () => bytes, capabilities);
                var expected = result.CommandResult.Command.Name == "serve" ? ComponentKind.Proxy : ComponentKind.Command;
                if (component.Kind != expected)
                {
                    throw new ModuleRejectedException(expected == ComponentKind.Proxy
                        ? $"{file.Name} is a {component.World} component: serve a wasi:http/proxy component, or run this one with `outpost wasm run`"
                        : $"{file.Name} is a {component.World} component: serve it with `outpost wasm serve`");
                }

                return true;
            }

            module = host.Compile(file.Name, bytes, capabilities);
            mounts = WasiMounts.Open(wanted);
            return true;
        }
        catch (Exception e) when (e is ModuleRejectedException or IOException or PlatformNotSupportedException)
        {
            Console.Error.WriteLine($"{name}: {e.Message}");
            component?.Dispose();
            module?.Dispose();
            host.Dispose();
            ((WasmLocalServices)grant.Services).Dispose();
            return false;
        }
    }
}
