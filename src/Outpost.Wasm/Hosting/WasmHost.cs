using System.Reflection;
using Module = Wasmtime.Module;
using Outpost.Core.Resources;
using Outpost.Wasm.Host;
using Outpost.Wasm.Wasi;
using Wasmtime;

namespace Outpost.Wasm.Hosting;

/// <summary>Options for the process-wide Wasm host.</summary>
public sealed record WasmHostOptions
{
    /// <summary>How often the epoch advances; timeouts are measured in these ticks. Default 10 ms.</summary>
    public TimeSpan EpochTick { get; init; } = TimeSpan.FromMilliseconds(10);

    /// <summary>Maximum guest stack in bytes; deep recursion traps instead of crashing. Default 512 KiB.</summary>
    public int MaxStackBytes { get; init; } = 512 * 1024;

    public TimeProvider TimeProvider { get; init; } = TimeProvider.System;

    /// <summary>Pool slots: instances that can run at once across all apps. Default 256.</summary>
    public int MaxInstances { get; init; } = 256;

    /// <summary>The most linear memory any instance may grow to, in MiB; apps asking for more are refused. Default 256.</summary>
    public int MaxMemoryMiB { get; init; } = 256;

    /// <summary>
    /// Linear memory kept mapped per pool slot between instances, so a small app's stack and
    /// heap are not page-faulted afresh on every request. Default 256 KiB.
    /// </summary>
    public int KeepResidentBytes { get; init; } = 256 * 1024;

    /// <summary>Use the pooling allocator (default). Off only to measure what it buys.</summary>
    public bool UsePooling { get; init; } = true;

    /// <summary>Where precompiled modules are kept, keyed by digest and Wasmtime version; null disables the cache.</summary>
    public string? CacheDir { get; init; }

    /// <summary>
    /// The command (an executable, then any arguments) that runs `outpost wasm compile`: a module
    /// missing from the cache is then compiled by that child process and loaded from the file it
    /// writes. Null compiles in this process. Needs <see cref="CacheDir"/>.
    /// </summary>
    public IReadOnlyList<string>? CompilerCommand { get; init; }

    /// <summary>
    /// The node's ONNX Runtime sessions, when it has ONNX Runtime (see Nn/OnnxRuntimeLibrary.cs):
    /// WASI-NN then works. Null: modules importing wasi_ephemeral_nn are refused at load.
    /// </summary>
    public Nn.NnSessions? Models { get; init; }

    public void Validate()
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxInstances, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxMemoryMiB, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(MaxStackBytes, 64 * 1024);
        ArgumentOutOfRangeException.ThrowIfNegative(KeepResidentBytes);
        if (EpochTick <= TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(EpochTick), "the epoch tick must be positive");
        }
    }
}

/// <summary>
/// One Wasmtime engine and linker for the whole process. Compiling happens when an app is
/// deployed; every run gets a fresh store and instance so nothing leaks between requests.
/// </summary>
public sealed class WasmHost : IDisposable
{
    private readonly Engine _engine;
    private readonly Linker _linker;
    private readonly ActivityTimer _ticker;
    private readonly WasmHostOptions _options;
    private readonly Lock _componentsGate = new();
    private Outpost.Wasm.Components.ComponentHost? _components;
    private long _compiledInChild;
    private long _compiledHere;
    private long _childFailures;

    /// <summary>The Wasmtime version; part of the precompiled cache key, since artifacts are engine-specific.</summary>
    public static string WasmtimeVersion { get; } =
        typeof(Engine).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion.Split('+')[0]
        ?? typeof(Engine).Assembly.GetName().Version?.ToString() ?? "unknown";

    public WasmHost(WasmHostOptions? options = null)
    {
        _options = options ?? new WasmHostOptions();
        _options.Validate();
        var slots = (uint)_options.MaxInstances;
        // Pooling: instance slots are reserved once and reused, so instantiation is a few
        // microseconds; copy-on-write images make data segments free to map; keeping the
        // first pages of each memory resident avoids re-faulting them on every request
        // (measured: 85 us per hello request with 64 KiB resident, 27 us with 256 KiB).
        using var pool = new PoolingAllocationConfig()
            .WithMaxCoreInstances(slots)
            .WithMaxMemories(slots)
            .WithMaxTables(slots)
            .WithMaxMemorySize((nuint)_options.MaxMemoryMiB * 1024 * 1024)
            .WithLinearMemoryKeepResidentBytes((nuint)_options.KeepResidentBytes)
            .WithTableKeepResidentBytes(16 * 1024);
        using var config = new Config()
            .WithEpochInterruption(true)
            .WithMaximumStackSize(_options.MaxStackBytes)
            .WithOptimizationLevel(OptimizationLevel.Speed)
            .WithMemoryInitCopyOnWrite(true);
        if (_options.UsePooling)
        {
            config.WithPoolingAllocationStrategy(pool);
        }

        _engine = new Engine(config);
        _linker = new Linker(_engine);
        WasiPreview1.Define(_linker, _options.TimeProvider);
        OutpostImports.Define(_linker, _options.TimeProvider, c => (WasiContext)c.GetData()!, WasiPreview1.MemoryOf);
        Nn.WasiNn.Define(_linker, c => (WasiContext)c.GetData()!, WasiPreview1.MemoryOf, _options.Models);
        // The epoch advances only while some guest runs: deadlines count ticks from their own start.
        _ticker = new ActivityTimer(_options.TimeProvider, _options.EpochTick, _engine.IncrementEpoch);
    }

    /// <summary>
    /// Validates and compiles a module, rejecting imports this host does not provide (so a
    /// bad module fails at deploy time, never on the first request).
    /// </summary>
    public WasmModule Compile(string name, ReadOnlySpan<byte> wasm, IReadOnlySet<string>? capabilities = null)
    {
        // Compiled once: the module validation compiled is the one that runs.
        var problems = Check(name, wasm, out var compiled);
        if (problems.Count > 0)
        {
            compiled?.Dispose();
            throw new ModuleRejectedException($"module '{name}' rejected: {string.Join("; ", problems)}");
        }

        return CheckGrants(name, new WasmModule(compiled!, fromCache: false), capabilities);
    }

    /// <summary>
    /// The component host, made when first needed: a node whose apps are all core modules never
    /// reserves the component engine's instance pool.
    /// </summary>
    public Outpost.Wasm.Components.ComponentHost Components
    {
        get
        {
            if (Volatile.Read(ref _components) is { } made)
            {
                return made;
            }

            lock (_componentsGate)
            {
                return _components ??= new Outpost.Wasm.Components.ComponentHost(_options);
            }
        }
    }

    /// <summary>Imports of host functions that the capabilities do not grant, as messages (empty when fine).</summary>
    public IReadOnlyList<string> CheckCapabilities(ReadOnlySpan<byte> wasm, IReadOnlySet<string> capabilities)
    {
        if (Outpost.Wasm.Components.ComponentHost.IsComponent(wasm))
        {
            return this.Components.CheckCapabilities("check", wasm, capabilities);
        }

        using var module = Module.FromBytes(_engine, "check", wasm);
        return OutpostImports.Ungranted(module.Imports.Select(i => (i.ModuleName, i.Name)), capabilities);
    }

    private WasmModule CheckGrants(string name, WasmModule module, IReadOnlySet<string>? capabilities)
    {
        var problems = OutpostImports.Ungranted(module.Module.Imports.Select(i => (i.ModuleName, i.Name)), capabilities ?? new HashSet<string>()).ToList();
        if (_options.Models is null && module.Module.Imports.Any(i => i.ModuleName == Nn.WasiNn.ModuleName))
        {
            problems.Add("it imports wasi_ephemeral_nn (WASI-NN), and this node has no ONNX Runtime (ai: unavailable)");
        }

        if (problems.Count > 0)
        {
            module.Dispose();
            throw new ModuleRejectedException($"module '{name}' rejected: {string.Join("; ", problems)}");
        }

        return module;
    }

    /// <summary>
    /// Loads a module for an app at deploy time: from the precompiled cache when it holds
    /// this digest for this Wasmtime version, else by validating and compiling the bytes
    /// (and caching the result). Only files this host wrote are ever deserialized.
    /// </summary>
    public WasmModule Load(string name, string digest, Func<byte[]> readWasm, IReadOnlySet<string>? capabilities = null)
    {
        ArgumentNullException.ThrowIfNull(readWasm);
        var cached = _options.CacheDir is null ? null : Path.Combine(_options.CacheDir, WasmtimeVersion, Digest.ToFileName(digest) + ".cwasm");
        if (cached is not null && File.Exists(cached))
        {
            try
            {
                var fromCache = new WasmModule(Module.DeserializeFile(_engine, name, cached), fromCache: true);
                return CheckGrants(name, fromCache, capabilities);
            }
            catch (WasmtimeException)
            {
                // Written by another engine configuration: compile again and replace it.
                File.Delete(cached);
            }
        }

        var wasm = readWasm();
        if (cached is not null && _options.CompilerCommand is { Count: > 0 } command)
        {
            Directory.CreateDirectory(Path.GetDirectoryName(cached)!);
            var output = $"{cached}.{Environment.ProcessId}.child.tmp";
            try
            {
                var failure = ChildCompiler.Compile(command, _options, name, wasm, output);
                if (failure is null)
                {
                    File.Move(output, cached, overwrite: true);
                    var fromChild = new WasmModule(Module.DeserializeFile(_engine, name, cached), fromCache: false);
                    Interlocked.Increment(ref _compiledInChild);
                    return CheckGrants(name, fromChild, capabilities);
                }

                // The child could not do it (not started, crashed, killed): compile here, as without one.
                Interlocked.Increment(ref _childFailures);
                LastChildFailure = failure;
            }
            catch (WasmtimeException e)
            {
                // The child's engine was configured otherwise: compile here.
                Interlocked.Increment(ref _childFailures);
                LastChildFailure = $"the compiler's file does not load here: {e.Message}";
                File.Delete(cached);
            }
            finally
            {
                File.Delete(output);
            }
        }

        var compiled = Compile(name, wasm, capabilities);
        Interlocked.Increment(ref _compiledHere);
        if (cached is not null)
        {
            Directory.CreateDirectory(Path.GetDirectoryName(cached)!);
            var temp = $"{cached}.{Environment.ProcessId}.tmp";
            File.WriteAllBytes(temp, compiled.Module.Serialize());
            File.Move(temp, cached, overwrite: true);
            // Run it from that file, as after a restart: the code's pages are then the file's (clean,
            // shared, dropped under memory pressure) rather than the compiler's private copy (measured:
            // ~6 MB of an agent's RSS with the three samples).
            try
            {
                var mapped = Module.DeserializeFile(_engine, name, cached);
                compiled.Dispose();
                compiled = new WasmModule(mapped, fromCache: false);
            }
            catch (WasmtimeException)
            {
                // Keep the compiled copy; the next start compiles again.
            }
        }

        _ = Core.Memory.NativeHeap.Trim(); // Cranelift's working memory, freed but still held by the C heap
        return compiled;
    }

    /// <summary>Modules compiled by the child compiler, and in this process.</summary>
    public (long InChild, long Here) Compiled => (Interlocked.Read(ref _compiledInChild), Interlocked.Read(ref _compiledHere));

    /// <summary>Compiles the child compiler failed to do (each then compiled here), and why the last one failed.</summary>
    public long ChildFailures => Interlocked.Read(ref _childFailures);

    /// <inheritdoc cref="ChildFailures"/>
    public string? LastChildFailure { get; private set; }

    /// <summary>
    /// What `outpost wasm compile` does: validates and compiles the module as <see cref="Compile"/>
    /// does, then writes it precompiled to <paramref name="output"/> (via a temporary file).
    /// </summary>
    public void CompileToFile(string name, ReadOnlySpan<byte> wasm, string output)
    {
        if (Outpost.Wasm.Components.ComponentHost.IsComponent(wasm))
        {
            Components.CompileToFile(name, wasm, output);
            return;
        }

        var problems = Check(name, wasm, out var module);
        using (module)
        {
            if (problems.Count > 0)
            {
                throw new ModuleRejectedException($"module '{name}' rejected: {string.Join("; ", problems)}");
            }

            var temp = output + ".partial";
            File.WriteAllBytes(temp, module!.Serialize());
            File.Move(temp, output, overwrite: true);
        }
    }

    /// <summary>The node's memory ceiling; an app asking for more cannot be placed here.</summary>
    public int MaxMemoryMiB => _options.MaxMemoryMiB;

    /// <summary>What is wrong with a module or component, or nothing: not Wasm, invalid, or importing what the host lacks.</summary>
    public IReadOnlyList<string> Validate(ReadOnlySpan<byte> wasm)
    {
        if (Outpost.Wasm.Components.ComponentHost.IsComponent(wasm))
        {
            return this.Components.Validate("validate", wasm).Problems;
        }

        var problems = Check("validate", wasm, out var module);
        module?.Dispose();
        return problems;
    }

    /// <summary>
    /// <see cref="Validate"/>, keeping the module it compiled to read the imports (null when the
    /// bytes are not valid Wasm); the caller owns it.
    /// </summary>
    private List<string> Check(string name, ReadOnlySpan<byte> wasm, out Module? module)
    {
        module = null;
        if (wasm.Length < 8 || !wasm[..4].SequenceEqual("\0asm"u8))
        {
            return ["not a WebAssembly module (missing the \\0asm header)"];
        }

        var error = Module.Validate(_engine, wasm);
        if (error is not null)
        {
            return [$"invalid WebAssembly: {error}"];
        }

        module = Module.FromBytes(_engine, name, wasm);
        var problems = new List<string>();
        var wasi = WasiPreview1.Functions;
        foreach (var import in module.Imports)
        {
            if (import.ModuleName == WasiPreview1.ModuleName && import is FunctionImport && wasi.Contains(import.Name))
            {
                continue;
            }

            if (import.ModuleName == OutpostImports.ModuleName && import is FunctionImport && OutpostImports.Capabilities.ContainsKey(import.Name))
            {
                continue; // granted or not is the manifest's business: see CheckCapabilities
            }

            if (import.ModuleName == Nn.WasiNn.ModuleName && import is FunctionImport && Nn.WasiNn.Functions.Contains(import.Name))
            {
                continue; // capability nn, and ONNX Runtime on the node: see CheckGrants
            }

            problems.Add($"import '{import.ModuleName}.{import.Name}' is not provided by the Outpost host");
        }

        if (!module.Exports.Any(e => e.Name == "_start" && e is FunctionExport))
        {
            problems.Add("no exported '_start' function: build it as a WASI command (e.g. clang --target=wasm32-wasi)");
        }

        return problems;
    }

    /// <summary>Runs a module's _start with the given context; never throws for guest failures.</summary>
    internal RunResult Run(WasmModule module, WasiContext context, AppLimits limits)
    {
        ArgumentNullException.ThrowIfNull(module);
        ArgumentNullException.ThrowIfNull(limits);
        using var store = new Store(_engine, context);
        store.SetLimits(memorySize: (long)limits.MemoryMiB * 1024 * 1024, tableElements: 100_000, instances: 1, tables: 4, memories: 1);
        var ticks = (ulong)Math.Max(1, Math.Ceiling(limits.TimeoutMs / _options.EpochTick.TotalMilliseconds)) + 1;
        store.SetEpochDeadline(ticks);
        context.Deadline = System.Diagnostics.Stopwatch.GetTimestamp() + (long)limits.TimeoutMs * System.Diagnostics.Stopwatch.Frequency / 1000;
        _ticker.Enter();
        Instance? instance = null;
        try
        {
            instance = _linker.Instantiate(store, module.Module);
            var start = instance.GetFunction("_start")
                ?? throw new InvalidOperationException("module has no _start");
            start.Invoke();
            return new RunResult(RunOutcome.Exited, 0, null, MemoryOf(context, instance));
        }
        catch (Exception ex) when (context.ExitCode is { } code && ex is WasmtimeException or GuestExitException)
        {
            return new RunResult(RunOutcome.Exited, code, null, MemoryOf(context, instance));
        }
        catch (Exception ex) when (context.TimedOut && ex is WasmtimeException or GuestTimeoutException)
        {
            return new RunResult(RunOutcome.TimedOut, -1, $"timed out after {limits.TimeoutMs} ms (asleep)", MemoryOf(context, instance));
        }
        catch (TrapException ex) when (ex.Type == TrapCode.Interrupt)
        {
            return new RunResult(RunOutcome.TimedOut, -1, $"timed out after {limits.TimeoutMs} ms", MemoryOf(context, instance));
        }
        catch (WasmtimeException) when (context.Stdout.Overflowed)
        {
            return new RunResult(RunOutcome.OutputTooLarge, -1, $"response exceeded maxResponseBytes ({context.Stdout.Capacity} bytes)", MemoryOf(context, instance));
        }
        catch (WasmtimeException ex) when (ex.Message.Contains("concurrent", StringComparison.OrdinalIgnoreCase) && ex.Message.Contains("limit", StringComparison.OrdinalIgnoreCase))
        {
            // Every pool slot is in use: the node is saturated, not the app broken.
            return new RunResult(RunOutcome.Busy, -1, FirstLine(ex.Message), 0);
        }
        catch (WasmtimeException ex)
        {
            return new RunResult(RunOutcome.Trapped, -1, TrapReason(ex), MemoryOf(context, instance));
        }
        finally
        {
            _ticker.Exit();
            context.Dispose(); // files the guest left open
        }
    }

    /// <summary>The instance's linear memory at the end of its run (it only grows, so this is its peak).</summary>
    private static long MemoryOf(WasiContext context, Instance? instance) =>
        (context.Memory ?? instance?.GetMemory("memory"))?.GetLength() ?? 0;

    /// <summary>"wasm trap: call stack exhausted" rather than the backtrace header Wasmtime leads with.</summary>
    private static string TrapReason(WasmtimeException ex)
    {
        var reason = Cause(ex.Message);
        return ex is TrapException trap ? $"{trap.Type}: {reason}" : reason;
    }

    /// <summary>The first line after Wasmtime's "Caused by:", else the message's first line (components' errors come as text).</summary>
    internal static string Cause(string message)
    {
        var cause = message.IndexOf("Caused by:", StringComparison.Ordinal);
        return cause >= 0 ? FirstLine(message[(cause + "Caused by:".Length)..].Trim()) : FirstLine(message);
    }

    internal static string FirstLine(string message)
    {
        var newline = message.IndexOf('\n', StringComparison.Ordinal);
        return newline < 0 ? message : message[..newline];
    }

    /// <summary>What the bytes are, for users: ("core", "wasi_snapshot_preview1") or ("component", its world); null when they are neither.</summary>
    public (string Kind, string World)? Describe(ReadOnlySpan<byte> wasm)
    {
        if (Outpost.Wasm.Components.ComponentHost.IsComponent(wasm))
        {
            var (_, _, world) = this.Components.Validate("describe", wasm);
            return world is null ? null : ("component", world);
        }

        return wasm.Length >= 8 && wasm[..4].SequenceEqual("\0asm"u8) ? ("core", WasiPreview1.ModuleName) : null;
    }

    public void Dispose()
    {
        _components?.Dispose();
        _ticker.Dispose();
        _linker.Dispose();
        _engine.Dispose();
    }
}

/// <summary>A compiled module, ready to instantiate many times.</summary>
public sealed class WasmModule : IDisposable
{
    internal WasmModule(Module module, bool fromCache)
    {
        Module = module;
        FromCache = fromCache;
    }

    internal Module Module { get; }

    /// <summary>True when it came from the precompiled cache rather than a compile.</summary>
    public bool FromCache { get; }

    public void Dispose() => Module.Dispose();
}

internal enum RunOutcome
{
    Exited,
    Trapped,
    TimedOut,
    OutputTooLarge,
    Busy,
}

/// <summary>How a run ended; MemoryBytes is the instance's linear memory when it ended (0 if it never started).</summary>
internal sealed record RunResult(RunOutcome Outcome, int ExitCode, string? Error, long MemoryBytes);

/// <summary>A module that cannot run here; the message says why.</summary>
public sealed class ModuleRejectedException : Exception
{
    public ModuleRejectedException(string message)
        : base(message)
    {
    }

    public ModuleRejectedException()
    {
    }

    public ModuleRejectedException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}
