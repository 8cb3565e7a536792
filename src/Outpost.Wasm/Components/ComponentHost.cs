using System.Diagnostics;
using System.Text;
using Outpost.Core.Resources;
using Outpost.Wasm.Hosting;

namespace Outpost.Wasm.Components;

/// <summary>What a component is for: serving HTTP (wasi:http/proxy) or running as a command (wasi:cli/command).</summary>
public enum ComponentKind
{
    Proxy,
    Command,
}

/// <summary>
/// Runs Wasm components (the component model): wasi:http/proxy components serve an app's route,
/// wasi:cli/command components run for timers and topics. One engine and one linker for the
/// process, holding the host's WASI 0.2 and Outpost interfaces; every run gets a fresh store and
/// instance, as core modules do, so nothing leaks between requests.
/// </summary>
public sealed unsafe class ComponentHost : IDisposable
{
    private readonly nint _engine;
    private readonly nint _linker;
    private readonly ActivityTimer _ticker;
    private readonly WasmHostOptions _options;
    /// <summary>
    /// Every interface the host provides, made once per process: their functions are registered
    /// with <see cref="HostFunctions"/> once, however many hosts (engines) there are.
    /// </summary>
    private static readonly Lazy<(List<WitInterface> Interfaces, Dictionary<(WitInterface, string), nint> Data)> Catalogue = new(() =>
    {
        List<WitInterface> interfaces = [.. WasiIo.Interfaces(), .. WasiHttp.Interfaces(), .. WasiCli.Interfaces(), .. OutpostWit.Interfaces()];
        var data = new Dictionary<(WitInterface, string), nint>();
        foreach (var wit in interfaces)
        {
            foreach (var (name, body) in wit.Functions)
            {
                data[(wit, name)] = HostFunctions.Register(body);
            }
        }

        return (interfaces, data);
    });

    private readonly List<WitInterface> _interfaces = Catalogue.Value.Interfaces;
    private readonly HashSet<string> _resourceNames;
    private readonly Dictionary<string, (IReadOnlyList<string>, Inspection?)> _checked = new(StringComparer.Ordinal);

    /// <summary>The WASI interfaces (and Outpost's) a component may import, with the version each is defined at.</summary>
    public IReadOnlyList<string> Provided => [.. _interfaces.Select(i => i.FullName)];

    public ComponentHost(WasmHostOptions? options = null)
    {
        _options = options ?? new WasmHostOptions();
        _options.Validate();
        var config = Native.wasm_config_new();
        Native.wasmtime_config_wasm_component_model_set(config, true);
        Native.wasmtime_config_epoch_interruption_set(config, true);
        Native.wasmtime_config_max_wasm_stack_set(config, (nuint)_options.MaxStackBytes);
        Native.wasmtime_config_cranelift_opt_level_set(config, 1); // WASMTIME_OPT_LEVEL_SPEED
        Native.wasmtime_config_memory_init_cow_set(config, true);
        if (_options.UsePooling)
        {
            var slots = (uint)_options.MaxInstances;
            var pool = Native.wasmtime_pooling_allocation_config_new();
            Native.wasmtime_pooling_allocation_config_total_component_instances_set(pool, slots);
            Native.wasmtime_pooling_allocation_config_total_core_instances_set(pool, slots * 8);
            Native.wasmtime_pooling_allocation_config_total_memories_set(pool, slots * 2);
            Native.wasmtime_pooling_allocation_config_total_tables_set(pool, slots * 4);
            Native.wasmtime_pooling_allocation_config_max_core_instances_per_component_set(pool, 32);
            Native.wasmtime_pooling_allocation_config_max_memories_per_component_set(pool, 4);
            Native.wasmtime_pooling_allocation_config_max_tables_per_component_set(pool, 16);
            Native.wasmtime_pooling_allocation_config_max_memory_size_set(pool, (nuint)_options.MaxMemoryMiB * 1024 * 1024);
            // Less kept resident than for core modules: a component's memory is reset on every
            // request, and for samples/components/http-c 64 KiB measured 54 us a request against
            // 59 us with 256 KiB (the memset of what is kept costs more than the faults it saves).
            Native.wasmtime_pooling_allocation_config_linear_memory_keep_resident_set(pool, (nuint)Math.Min(_options.KeepResidentBytes, 64 * 1024));
            // A component's instances (its module and the shims tooling adds) are decommitted with
            // madvise, which takes the process's memory-map lock: one at a time, two threads
            // serving components ran barely faster than one. Batched 16 at a time, http-c measured
            // 42 us p50 against 52 us, and 29k against 19k requests/s on two threads (bench/run.sh
            // components). What a batch holds (15 slots' touched pages at most) stays resident until it is flushed.
            Native.wasmtime_pooling_allocation_config_decommit_batch_size_set(pool, 16);
            Native.wasmtime_pooling_allocation_config_table_keep_resident_set(pool, 16 * 1024);
            Native.wasmtime_pooling_allocation_strategy_set(config, pool);
            Native.wasmtime_pooling_allocation_config_delete(pool);
        }

        _engine = Native.wasm_engine_new_with_config(config);
        _linker = Native.wasmtime_component_linker_new(_engine);
        // Resources by name, and the aliases WASI 0.2 gives them (type headers = fields; use error as io-error).
        _resourceNames = new HashSet<string>(_interfaces.SelectMany(i => i.Resources.Keys), StringComparer.Ordinal) { "headers", "trailers", "io-error" };
        Define();
        var engine = _engine;
        _ticker = new ActivityTimer(_options.TimeProvider, _options.EpochTick, () => Native.wasmtime_engine_increment_epoch(engine));
    }

    private void Define()
    {
        var root = Native.wasmtime_component_linker_root(_linker);
        try
        {
            foreach (var wit in _interfaces)
            {
                nint instance;
                fixed (byte* name = Encoding.UTF8.GetBytes(wit.FullName))
                {
                    Native.Check(Native.wasmtime_component_linker_instance_add_instance(root, name, (nuint)Encoding.UTF8.GetByteCount(wit.FullName), &instance), wit.FullName);
                }

                try
                {
                    foreach (var (resource, type) in wit.Resources)
                    {
                        var resourceType = Native.wasmtime_component_resource_type_new_host((uint)type);
                        try
                        {
                            var bytes = Encoding.UTF8.GetBytes(resource);
                            fixed (byte* name = bytes)
                            {
                                Native.Check(Native.wasmtime_component_linker_instance_add_resource(instance, name, (nuint)bytes.Length, resourceType, HostFunctions.Destructor, (nint)(uint)type, 0), $"{wit.FullName} {resource}");
                            }
                        }
                        finally
                        {
                            Native.wasmtime_component_resource_type_delete(resourceType);
                        }
                    }

                    foreach (var function in wit.Functions.Keys)
                    {
                        var bytes = Encoding.UTF8.GetBytes(function);
                        fixed (byte* name = bytes)
                        {
                            Native.Check(Native.wasmtime_component_linker_instance_add_func(instance, name, (nuint)bytes.Length, HostFunctions.Entry, Catalogue.Value.Data[(wit, function)], 0), $"{wit.FullName} {function}");
                        }
                    }
                }
                finally
                {
                    Native.wasmtime_component_linker_instance_delete(instance);
                }
            }
        }
        finally
        {
            Native.wasmtime_component_linker_instance_delete(root);
        }
    }

    /// <summary>Whether the bytes are a component rather than a core module (the preamble's layer field is 1).</summary>
    public static bool IsComponent(ReadOnlySpan<byte> wasm) =>
        wasm.Length >= 8 && wasm[..4].SequenceEqual("\0asm"u8) && wasm[6] == 1 && wasm[7] == 0;

    /// <summary>
    /// Loads a component at deploy time: from the precompiled cache when it holds this digest for
    /// this Wasmtime version, else by compiling the bytes (and caching the result). Its imports are
    /// checked against what this host provides and its exports name its kind, so a component that
    /// cannot run is refused here, never on its first request.
    /// </summary>
    public WasmComponent Load(string name, string digest, Func<byte[]> readWasm, IReadOnlySet<string>? capabilities = null)
    {
        ArgumentNullException.ThrowIfNull(readWasm);
        var cached = _options.CacheDir is null ? null : Path.Combine(_options.CacheDir, WasmHost.WasmtimeVersion, Digest.ToFileName(digest) + ".cwasm");
        var fromCache = cached is not null && File.Exists(cached);
        var component = fromCache ? Deserialize(cached!) : 0;
        fromCache = component != 0;
        if (component == 0)
        {
            var wasm = readWasm();
            if (cached is not null && _options.CompilerCommand is { Count: > 0 } command)
            {
                // As for core modules: the child process compiles (a JavaScript component's
                // Cranelift working set is hundreds of MB) and this one maps what it wrote.
                Directory.CreateDirectory(Path.GetDirectoryName(cached)!);
                var output = $"{cached}.{Environment.ProcessId}.child.tmp";
                try
                {
                    if (ChildCompiler.Compile(command, _options, name, wasm, output) is null)
                    {
                        File.Move(output, cached, overwrite: true);
                        component = Deserialize(cached);
                    }
                }
                finally
                {
                    File.Delete(output);
                }
            }

            if (component == 0)
            {
                component = Compile(name, wasm);
                if (cached is not null)
                {
                    WriteSerialized(component, cached);
                    // Run it from that file, as after a restart: its code pages are then the file's
                    // (clean, shared, dropped under pressure) rather than the compiler's private copy.
                    if (Deserialize(cached) is var mapped and not 0)
                    {
                        Native.wasmtime_component_delete(component);
                        component = mapped;
                    }
                }

                _ = Core.Memory.NativeHeap.Trim();
            }
        }

        try
        {
            var inspection = Inspect(name, component);
            if (Ungranted(inspection.Imports, capabilities ?? new HashSet<string>()) is { Count: > 0 } ungranted)
            {
                throw new ModuleRejectedException($"component '{name}' rejected: {string.Join("; ", ungranted)}");
            }

            return new WasmComponent(component, inspection.Kind, inspection.World, inspection.Export, fromCache);
        }
        catch
        {
            Native.wasmtime_component_delete(component);
            throw;
        }
    }

    /// <summary>A component from a file this host wrote, or 0 when it does not load here (another engine's: it is removed).</summary>
    private nint Deserialize(string path)
    {
        nint component;
        fixed (byte* file = Encoding.UTF8.GetBytes(path + "\0"))
        {
            var error = Native.wasmtime_component_deserialize_file(_engine, file, &component);
            if (error == 0)
            {
                return component;
            }

            Native.TakeMessage(error);
        }

        File.Delete(path);
        return 0;
    }

    private static void WriteSerialized(nint component, string path)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        ByteVec serialized;
        Native.Check(Native.wasmtime_component_serialize(component, &serialized), "serialize");
        try
        {
            var temp = $"{path}.{Environment.ProcessId}.tmp";
            using (var file = File.Create(temp))
            {
                file.Write(new ReadOnlySpan<byte>(serialized.Data, checked((int)serialized.Size)));
            }

            File.Move(temp, path, overwrite: true);
        }
        finally
        {
            Native.wasm_byte_vec_delete(&serialized);
        }
    }

    /// <summary>
    /// What `outpost wasm compile` does with a component: compiles and checks it as <see cref="Load"/>
    /// would (imports, exports; capabilities are the loader's business), then writes it precompiled.
    /// </summary>
    public void CompileToFile(string name, ReadOnlySpan<byte> wasm, string output)
    {
        var component = Compile(name, wasm);
        try
        {
            Inspect(name, component);
            WriteSerialized(component, output);
        }
        finally
        {
            Native.wasmtime_component_delete(component);
        }
    }

    private nint Compile(string name, ReadOnlySpan<byte> wasm)
    {
        if (!IsComponent(wasm))
        {
            throw new ModuleRejectedException($"component '{name}' rejected: not a WebAssembly component (the preamble is not a component's)");
        }

        nint component;
        fixed (byte* bytes = wasm)
        {
            var error = Native.wasmtime_component_new(_engine, bytes, (nuint)wasm.Length, &component);
            if (error != 0)
            {
                var message = Native.TakeMessage(error);
                var cause = WasmHost.Cause(message);
                throw new ModuleRejectedException($"component '{name}' rejected: invalid component: {WasmHost.FirstLine(message)}{(cause == WasmHost.FirstLine(message) ? "" : ": " + cause)}");
            }
        }

        return component;
    }

    /// <summary>
    /// What is wrong with a component for this host (empty when it can run here), its kind and world,
    /// and the interfaces it imports. Compiling is what checks it, so results are kept by content
    /// (a server validates the same bytes at push and again at apply).
    /// </summary>
    public (IReadOnlyList<string> Problems, ComponentKind? Kind, string? World) Validate(string name, ReadOnlySpan<byte> wasm)
    {
        var checkedOnce = Check(name, wasm);
        return (checkedOnce.Problems, checkedOnce.Inspection?.Kind, checkedOnce.Inspection?.World);
    }

    /// <summary>Imports of Outpost interfaces the capabilities do not grant, as messages (empty when fine, or when not a valid component).</summary>
    public IReadOnlyList<string> CheckCapabilities(string name, ReadOnlySpan<byte> wasm, IReadOnlySet<string> capabilities) =>
        Check(name, wasm).Inspection is { } inspection ? Ungranted(inspection.Imports, capabilities) : [];

    private static List<string> Ungranted(IEnumerable<WitInterface> imports, IReadOnlySet<string> capabilities) =>
        [.. imports.Where(i => i.Capability is { } needed && !capabilities.Contains(needed))
            .Select(i => $"it imports '{i.FullName}', which needs capability '{i.Capability}', which spec.capabilities does not grant")];

    private (IReadOnlyList<string> Problems, Inspection? Inspection) Check(string name, ReadOnlySpan<byte> wasm)
    {
        var key = Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(wasm));
        lock (_checked)
        {
            if (_checked.TryGetValue(key, out var known))
            {
                return known;
            }
        }

        (IReadOnlyList<string>, Inspection?) result;
        nint component = 0;
        try
        {
            component = Compile(name, wasm);
            result = ([], Inspect(name, component));
        }
        catch (ModuleRejectedException e)
        {
            result = ([e.Message], null);
        }
        finally
        {
            if (component != 0)
            {
                Native.wasmtime_component_delete(component);
            }
        }

        lock (_checked)
        {
            if (_checked.Count >= 64)
            {
                _checked.Clear();
            }

            _checked[key] = result;
        }

        return result;
    }

    /// <summary>Checks imports against the host's interfaces and finds the export that makes it a proxy or a command.</summary>
    private Inspection Inspect(string name, nint component)
    {
        var type = Native.wasmtime_component_type(component);
        var problems = new List<string>();
        var imported = new List<WitInterface>();
        string? proxy = null;
        string? command = null;
        try
        {
            var imports = Native.wasmtime_component_type_import_count(type, _engine);
            for (nuint i = 0; i < imports; i++)
            {
                byte* importName;
                nuint length;
                nint external;
                if (!Native.wasmtime_component_type_import_nth(type, _engine, i, &importName, &length, &external))
                {
                    continue;
                }

                try
                {
                    if (CheckImport(Encoding.UTF8.GetString(importName, (int)length), external, problems) is { } wit)
                    {
                        imported.Add(wit);
                    }
                }
                finally
                {
                    Native.wasmtime_component_extern_delete(external);
                }
            }

            var exports = Native.wasmtime_component_type_export_count(type, _engine);
            var exported = new List<string>();
            for (nuint i = 0; i < exports; i++)
            {
                byte* exportName;
                nuint length;
                nint external;
                if (Native.wasmtime_component_type_export_nth(type, _engine, i, &exportName, &length, &external))
                {
                    Native.wasmtime_component_extern_delete(external);
                    var export = Encoding.UTF8.GetString(exportName, (int)length);
                    exported.Add(export);
                    if (export.StartsWith("wasi:http/incoming-handler@0.2.", StringComparison.Ordinal))
                    {
                        proxy = export;
                    }
                    else if (export.StartsWith("wasi:cli/run@0.2.", StringComparison.Ordinal))
                    {
                        command = export;
                    }
                    else if (export.StartsWith("wasi:http/incoming-handler@", StringComparison.Ordinal) || export.StartsWith("wasi:cli/run@", StringComparison.Ordinal))
                    {
                        problems.Add($"it exports '{export}', a WASI version this host does not run (it runs WASI 0.2: wasi:http/incoming-handler@0.2.x, wasi:cli/run@0.2.x)");
                    }
                }
            }

            if (proxy is null && command is null && problems.Count == 0)
            {
                problems.Add($"it exports neither wasi:http/incoming-handler@0.2.x (a wasi:http/proxy component) nor wasi:cli/run@0.2.x (a wasi:cli/command component); it exports: {(exported.Count == 0 ? "nothing" : string.Join(", ", exported))}");
            }
        }
        finally
        {
            Native.wasmtime_component_type_delete(type);
        }

        if (problems.Count > 0)
        {
            throw new ModuleRejectedException($"component '{name}' rejected: {string.Join("; ", problems)}");
        }

        if (proxy is not null)
        {
            return new Inspection(ComponentKind.Proxy, "wasi:http/proxy@" + proxy[(proxy.IndexOf('@', StringComparison.Ordinal) + 1)..], proxy, imported);
        }

        var run = command!;
        return new Inspection(ComponentKind.Command, "wasi:cli/command@" + run[(run.IndexOf('@', StringComparison.Ordinal) + 1)..], run, imported);
    }

    private WitInterface? CheckImport(string name, nint external, List<string> problems)
    {
        ComponentItem item;
        Native.wasmtime_component_extern_type(external, &item);
        try
        {
            if (item.Kind != ComponentItem.ComponentInstance)
            {
                problems.Add($"it imports '{name}', which is not an interface (this host provides interfaces only)");
                return null;
            }

            WitInterface? wit = null;
            string? versionProblem = null;
            foreach (var candidate in _interfaces)
            {
                if (candidate.Matches(name, out var problem))
                {
                    wit = candidate;
                    break;
                }

                versionProblem ??= problem;
            }

            if (wit is null)
            {
                problems.Add(versionProblem is not null
                    ? $"it imports {versionProblem}"
                    : $"it imports '{name}', which Outpost does not provide");
                return null;
            }

            var count = Native.wasmtime_component_instance_type_export_count(item.Pointer, _engine);
            for (nuint i = 0; i < count; i++)
            {
                byte* member;
                nuint length;
                nint memberExtern;
                if (!Native.wasmtime_component_instance_type_export_nth(item.Pointer, _engine, i, &member, &length, &memberExtern))
                {
                    continue;
                }

                try
                {
                    ComponentItem memberItem;
                    Native.wasmtime_component_extern_type(memberExtern, &memberItem);
                    var kind = memberItem.Kind;
                    Native.wasmtime_component_item_delete(&memberItem);
                    var memberName = Encoding.UTF8.GetString(member, (int)length);
                    var known = kind switch
                    {
                        ComponentItem.ComponentFunc => wit.Functions.ContainsKey(memberName),
                        ComponentItem.Resource => _resourceNames.Contains(memberName),
                        _ => true, // types: records, variants and the like need no definition
                    };
                    if (!known)
                    {
                        problems.Add($"it imports '{memberName}' from '{name}', which Outpost does not provide");
                    }
                }
                finally
                {
                    Native.wasmtime_component_extern_delete(memberExtern);
                }
            }

            return wit;
        }
        finally
        {
            Native.wasmtime_component_item_delete(&item);
        }
    }

    /// <summary>
    /// Serves one request through a proxy component's wasi:http/incoming-handler.handle in a fresh
    /// instance. Guest failures become results (500, 504), never exceptions.
    /// </summary>
    internal ProxyResult Handle(WasmComponent component, Http.IncomingRequest request, AppLimits limits, Host.HostGrant? grant, IReadOnlyList<KeyValuePair<string, string>> environment)
    {
        ArgumentNullException.ThrowIfNull(component);
        ArgumentNullException.ThrowIfNull(limits);
        if (component.Kind != ComponentKind.Proxy)
        {
            throw new InvalidOperationException("not a wasi:http/proxy component");
        }

        var run = new ComponentRun(environment, [], ReadOnlyMemory<byte>.Empty, 64 * 1024)
        {
            Grant = grant,
            Request = request,
            MaxResponseBytes = limits.MaxResponseBytes,
        };
        var outcome = Invoke(component, run, limits, (store, context, args) =>
        {
            var table = run.Table;
            Values.Resource(context, &args[0], ResourceType.IncomingRequest, table.Add(ResourceType.IncomingRequest, request));
            Values.Resource(context, &args[1], ResourceType.ResponseOutparam, table.Add(ResourceType.ResponseOutparam, new Http.ResponseOutparam()));
            return 2;
        });
        return new ProxyResult(outcome, run);
    }

    /// <summary>Runs a command component's wasi:cli/run.run in a fresh instance: stdin in, stdout and stderr captured.</summary>
    internal CommandResult Run(WasmComponent component, ReadOnlyMemory<byte> stdin, IReadOnlyList<KeyValuePair<string, string>> environment, IReadOnlyList<string> arguments, AppLimits limits, Host.HostGrant? grant)
    {
        ArgumentNullException.ThrowIfNull(component);
        ArgumentNullException.ThrowIfNull(limits);
        if (component.Kind != ComponentKind.Command)
        {
            throw new InvalidOperationException("not a wasi:cli/command component");
        }

        var run = new ComponentRun(environment, arguments, stdin, limits.MaxResponseBytes) { Grant = grant };
        var outcome = Invoke(component, run, limits, (_, _, _) => 0);
        return new CommandResult(outcome, run);
    }

    private delegate int ArgumentWriter(nint store, nint context, Val* args);

    private RunOutcome Invoke(WasmComponent component, ComponentRun run, AppLimits limits, ArgumentWriter writeArgs)
    {
        var data = StoreData.Pin(run);
        var store = Native.wasmtime_store_new(_engine, data, 0);
        var context = Native.wasmtime_store_context(store);
        Native.wasmtime_store_limiter(store, (long)limits.MemoryMiB * 1024 * 1024, 100_000, 64, 64, 8);
        var ticks = (ulong)Math.Max(1, Math.Ceiling(limits.TimeoutMs / _options.EpochTick.TotalMilliseconds)) + 1;
        Native.wasmtime_context_set_epoch_deadline(context, ticks);
        run.Deadline = Stopwatch.GetTimestamp() + (long)limits.TimeoutMs * Stopwatch.Frequency / 1000;
        var args = stackalloc Val[2];
        var argCount = 0;
        using var current = ComponentRun.Enter(run);
        _ticker.Enter();
        try
        {
            InstanceHandle instance;
            var error = Native.wasmtime_component_linker_instantiate(_linker, context, component.Handle, &instance);
            if (error != 0)
            {
                return Failed(run, Native.TakeMessage(error), instantiating: true);
            }

            FuncHandle func;
            if (!Native.wasmtime_component_instance_get_func(&instance, context, component.FuncIndex, &func))
            {
                return new RunOutcome(RunStatus.Trapped, $"the component does not export {component.Export}#{component.FunctionName}");
            }

            argCount = writeArgs(store, context, args);
            Val result = default;
            var resultCount = component.Kind == ComponentKind.Command ? 1 : 0;
            error = Native.wasmtime_component_func_call(&func, context, args, (nuint)argCount, &result, (nuint)resultCount);
            if (error != 0)
            {
                return Failed(run, Native.TakeMessage(error), instantiating: false);
            }

            var ok = resultCount == 0 || (result.Kind == Val.Result && result.Byte != 0);
            if (resultCount > 0)
            {
                Native.wasmtime_component_val_delete(&result);
            }

            error = Native.wasmtime_component_func_post_return(&func, context);
            if (error != 0)
            {
                return Failed(run, Native.TakeMessage(error), instantiating: false);
            }

            return component.Kind == ComponentKind.Command
                ? new RunOutcome(RunStatus.Exited, null) { ExitCode = ok ? 0 : 1 }
                : new RunOutcome(RunStatus.Exited, null);
        }
        finally
        {
            _ticker.Exit();
            for (var i = 0; i < argCount; i++)
            {
                Native.wasmtime_component_val_delete(&args[i]);
            }

            Native.wasmtime_store_delete(store);
            StoreData.Free(data);
        }
    }

    private static RunOutcome Failed(ComponentRun run, string message, bool instantiating)
    {
        if (run.ExitCode is { } code)
        {
            return new RunOutcome(RunStatus.Exited, null) { ExitCode = code };
        }

        if (run.TimedOut || message.Contains("wasm trap: interrupt", StringComparison.Ordinal))
        {
            return new RunOutcome(RunStatus.TimedOut, "timed out");
        }

        if (message.Contains("concurrent", StringComparison.OrdinalIgnoreCase) && message.Contains("limit", StringComparison.OrdinalIgnoreCase))
        {
            return new RunOutcome(RunStatus.Busy, WasmHost.FirstLine(message));
        }

        return new RunOutcome(RunStatus.Trapped, (instantiating ? "instantiation failed: " : "") + WasmHost.Cause(message));
    }

    /// <summary>The export index of <paramref name="function"/> in instance <paramref name="export"/> of a compiled component.</summary>
    internal static nint FunctionIndex(nint component, string export, string function)
    {
        var exportBytes = Encoding.UTF8.GetBytes(export);
        nint instanceIndex;
        fixed (byte* p = exportBytes)
        {
            instanceIndex = Native.wasmtime_component_get_export_index(component, 0, p, (nuint)exportBytes.Length);
        }

        if (instanceIndex == 0)
        {
            throw new ModuleRejectedException($"component does not export '{export}'");
        }

        try
        {
            var functionBytes = Encoding.UTF8.GetBytes(function);
            fixed (byte* p = functionBytes)
            {
                var index = Native.wasmtime_component_get_export_index(component, instanceIndex, p, (nuint)functionBytes.Length);
                return index != 0 ? index : throw new ModuleRejectedException($"component's '{export}' has no function '{function}'");
            }
        }
        finally
        {
            Native.wasmtime_component_export_index_delete(instanceIndex);
        }
    }

    public void Dispose()
    {
        _ticker.Dispose();
        Native.wasmtime_component_linker_delete(_linker);
        Native.wasm_engine_delete(_engine);
    }
}

/// <summary>A compiled component, ready to instantiate many times.</summary>
public sealed class WasmComponent : IDisposable
{
    internal WasmComponent(nint handle, ComponentKind kind, string world, string export, bool fromCache)
    {
        Handle = handle;
        Kind = kind;
        World = world;
        Export = export;
        FromCache = fromCache;
        FunctionName = kind == ComponentKind.Proxy ? "handle" : "run";
        FuncIndex = ComponentHost.FunctionIndex(handle, export, FunctionName);
    }

    internal nint Handle { get; private set; }

    internal nint FuncIndex { get; private set; }

    internal string FunctionName { get; }

    /// <summary>The export it is run through: <c>wasi:http/incoming-handler@0.2.0</c>.</summary>
    public string Export { get; }

    public ComponentKind Kind { get; }

    /// <summary>The world it targets, as shown to users: <c>wasi:http/proxy@0.2.0</c>.</summary>
    public string World { get; }

    public bool FromCache { get; }

    public void Dispose()
    {
        if (FuncIndex != 0)
        {
            Native.wasmtime_component_export_index_delete(FuncIndex);
            FuncIndex = 0;
        }

        if (Handle != 0)
        {
            Native.wasmtime_component_delete(Handle);
            Handle = 0;
        }
    }
}

internal enum RunStatus
{
    Exited,
    Trapped,
    TimedOut,
    Busy,
}

/// <summary>How a component run ended.</summary>
internal sealed record RunOutcome(RunStatus Status, string? Error)
{
    public int ExitCode { get; init; }
}

/// <summary>What a component is, as its imports and exports say.</summary>
internal sealed record Inspection(ComponentKind Kind, string World, string Export, IReadOnlyList<WitInterface> Imports);

/// <summary>A request through a proxy component: how the run ended, and what the guest answered.</summary>
internal sealed record ProxyResult(RunOutcome Outcome, ComponentRun Run);

/// <summary>A command component's run: how it ended, its output.</summary>
internal sealed record CommandResult(RunOutcome Outcome, ComponentRun Run);
