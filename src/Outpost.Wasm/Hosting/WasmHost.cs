using Outpost.Core.Resources;
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
}

/// <summary>
/// One Wasmtime engine and linker for the whole process. Compiling happens when an app is
/// deployed; every run gets a fresh store and instance so nothing leaks between requests.
/// </summary>
public sealed class WasmHost : IDisposable
{
    private readonly Engine _engine;
    private readonly Linker _linker;
    private readonly ITimer _ticker;
    private readonly WasmHostOptions _options;

    public WasmHost(WasmHostOptions? options = null)
    {
        _options = options ?? new WasmHostOptions();
        using var config = new Config()
            .WithEpochInterruption(true)
            .WithMaximumStackSize(_options.MaxStackBytes)
            .WithOptimizationLevel(OptimizationLevel.Speed);
        _engine = new Engine(config);
        _linker = new Linker(_engine);
        WasiPreview1.Define(_linker, _options.TimeProvider);
        _ticker = _options.TimeProvider.CreateTimer(_ => _engine.IncrementEpoch(), null, _options.EpochTick, _options.EpochTick);
    }

    /// <summary>
    /// Validates and compiles a module, rejecting imports this host does not provide (so a
    /// bad module fails at deploy time, never on the first request).
    /// </summary>
    public WasmModule Compile(string name, ReadOnlySpan<byte> wasm)
    {
        var problems = Validate(wasm);
        if (problems.Count > 0)
        {
            throw new ModuleRejectedException($"module '{name}' rejected: {string.Join("; ", problems)}");
        }

        return new WasmModule(Module.FromBytes(_engine, name, wasm));
    }

    /// <summary>What is wrong with a module, or nothing: not Wasm, invalid, or importing what the host lacks.</summary>
    public IReadOnlyList<string> Validate(ReadOnlySpan<byte> wasm)
    {
        if (wasm.Length < 8 || !wasm[..4].SequenceEqual("\0asm"u8))
        {
            return ["not a WebAssembly module (missing the \\0asm header)"];
        }

        var error = Module.Validate(_engine, wasm);
        if (error is not null)
        {
            return [$"invalid WebAssembly: {error}"];
        }

        using var module = Module.FromBytes(_engine, "validate", wasm);
        var problems = new List<string>();
        var wasi = WasiPreview1.Functions;
        foreach (var import in module.Imports)
        {
            if (import.ModuleName == WasiPreview1.ModuleName && import is FunctionImport && wasi.Contains(import.Name))
            {
                continue;
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
        try
        {
            var instance = _linker.Instantiate(store, module.Module);
            var start = instance.GetFunction("_start")
                ?? throw new InvalidOperationException("module has no _start");
            start.Invoke();
            return new RunResult(RunOutcome.Exited, 0, null);
        }
        catch (Exception ex) when (context.ExitCode is { } code && ex is WasmtimeException or GuestExitException)
        {
            return new RunResult(RunOutcome.Exited, code, null);
        }
        catch (TrapException ex) when (ex.Type == TrapCode.Interrupt)
        {
            return new RunResult(RunOutcome.TimedOut, -1, $"timed out after {limits.TimeoutMs} ms");
        }
        catch (WasmtimeException ex)
        {
            if (context.Stdout.Overflowed || context.Stderr.Overflowed)
            {
                return new RunResult(RunOutcome.OutputTooLarge, -1, $"output exceeded {context.Stdout.Capacity} bytes");
            }

            return new RunResult(RunOutcome.Trapped, -1, FirstLine(ex.Message));
        }
    }

    private static string FirstLine(string message)
    {
        var newline = message.IndexOf('\n', StringComparison.Ordinal);
        return newline < 0 ? message : message[..newline];
    }

    public void Dispose()
    {
        _ticker.Dispose();
        _linker.Dispose();
        _engine.Dispose();
    }
}

/// <summary>A compiled module, ready to instantiate many times.</summary>
public sealed class WasmModule : IDisposable
{
    internal WasmModule(Module module) => Module = module;

    internal Module Module { get; }

    public void Dispose() => Module.Dispose();
}

internal enum RunOutcome
{
    Exited,
    Trapped,
    TimedOut,
    OutputTooLarge,
}

internal sealed record RunResult(RunOutcome Outcome, int ExitCode, string? Error);

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
