using Outpost.Core.Resources;
using Outpost.Wasm.Hosting;

namespace Outpost.Wasm.Wasi;

/// <summary>What a WASI command run gets: its arguments (argv[0] first), environment, directories, stdio and limits.</summary>
public sealed record WasiCommandOptions
{
    public IReadOnlyList<string> Args { get; init; } = ["main.wasm"];

    public IReadOnlyList<KeyValuePair<string, string>> Env { get; init; } = [];

    /// <summary>The directories the guest sees, opened for this run (or shared, when the caller keeps them).</summary>
    public WasiMounts? Mounts { get; init; }

    public Stream Stdin { get; init; } = Stream.Null;

    public Stream Stdout { get; init; } = Stream.Null;

    public Stream Stderr { get; init; } = Stream.Null;

    public AppLimits Limits { get; init; } = new();

    /// <summary>The models the guest may load by name through WASI-NN.</summary>
    public IReadOnlyDictionary<string, Nn.NnModel>? Models { get; init; }

    /// <summary>Outpost host functions the command may call (null grants none).</summary>
    public Host.HostGrant? Grant { get; init; }
}

/// <summary>How a command ended: its exit code, and for a trap or timeout what happened.</summary>
public sealed record WasiCommandResult(int ExitCode, string? Error, bool TimedOut)
{
    /// <summary>What the host noted about the run (a full volume, a WASI-NN call refused and why).</summary>
    public IReadOnlyList<string> Notes { get; init; } = [];
}

/// <summary>
/// Runs a WASI command (its <c>_start</c>) with the agent's engine, WASI and limits, with stdio
/// streamed: what `outpost wasm run` does. A guest that traps exits 134 (128 + SIGABRT, as
/// `wasmtime run` reports it); one that runs out of time exits 124 (as `timeout` does).
/// </summary>
public static class WasiCommand
{
    public const int TrapExitCode = 134;
    public const int TimeoutExitCode = 124;

    public static WasiCommandResult Run(WasmHost host, WasmModule module, WasiCommandOptions options)
    {
        ArgumentNullException.ThrowIfNull(host);
        ArgumentNullException.ThrowIfNull(module);
        ArgumentNullException.ThrowIfNull(options);
        var context = new WasiContext(options.Args, options.Env, options.Stdin, new StreamOutput(options.Stdout), new StreamOutput(options.Stderr))
        {
            Mounts = options.Mounts,
            Grant = options.Grant,
            Models = options.Models,
        };
        var result = host.Run(module, context, options.Limits);
        return result.Outcome switch
        {
            RunOutcome.Exited => new WasiCommandResult(result.ExitCode, null, false) { Notes = context.Notes },
            RunOutcome.TimedOut => new WasiCommandResult(TimeoutExitCode, result.Error, true) { Notes = context.Notes },
            _ => new WasiCommandResult(TrapExitCode, result.Error, false) { Notes = context.Notes },
        };
    }
}
