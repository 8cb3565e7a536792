using Outpost.Core.Resources;
using Outpost.Wasm.Hosting;
using Outpost.Wasm.Wagi;
using Outpost.Wasm.Wasi;

namespace Outpost.Wasm.Events;

/// <summary>How a timer or topic run ended; output is kept only for the log.</summary>
public sealed record EventOutcome(bool Succeeded, string? Error, string? Stderr)
{
    /// <summary>What the host noted about the run, for the app's log (a volume over its quota).</summary>
    public IReadOnlyList<string> Notes { get; init; } = [];
}

/// <summary>
/// Runs a module for an event (a timer tick or a topic message) in a fresh instance: the
/// event's details in the environment (OUTPOST_TRIGGER, OUTPOST_TOPIC, OUTPOST_PUBLISHER),
/// a message's payload on stdin. Same limits and grants as an HTTP request.
/// </summary>
public sealed class EventRunner(WasmHost host)
{
    public EventOutcome Run(WasmModule module, AppEnvironment env, AppLimits limits, Host.HostGrant? grant,
        IReadOnlyList<KeyValuePair<string, string>> eventEnv, ReadOnlyMemory<byte> payload, WasiMounts? mounts = null, IReadOnlyDictionary<string, Nn.NnModel>? models = null)
    {
        ArgumentNullException.ThrowIfNull(env);
        ArgumentNullException.ThrowIfNull(limits);
        var variables = new StringBlock().AddAll(env.Block);
        foreach (var (key, value) in eventEnv)
        {
            variables.Add(key, value);
        }

        var context = new WasiContext(new StringBlock().Append("event").End(), variables, payload, limits.MaxResponseBytes, 64 * 1024) { Grant = grant, Mounts = mounts, Models = models };
        var result = host.Run(module, context, limits);
        var stderr = context.CapturedStderr.Length > 0 ? context.CapturedStderr.ToText() : null;
        return result.Outcome switch
        {
            RunOutcome.Exited when result.ExitCode == 0 => new EventOutcome(true, null, stderr) { Notes = context.Notes },
            RunOutcome.Exited => new EventOutcome(false, $"exited with code {result.ExitCode}", stderr) { Notes = context.Notes },
            _ => new EventOutcome(false, result.Error, stderr) { Notes = context.Notes },
        };
    }
}
