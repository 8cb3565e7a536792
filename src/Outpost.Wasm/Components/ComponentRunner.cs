using System.Text;
using Outpost.Core.Resources;
using Outpost.Wasm.Events;
using Outpost.Wasm.Host;
using Outpost.Wasm.Wagi;

namespace Outpost.Wasm.Components;

/// <summary>
/// Serves requests and events through components with the same outcomes as core modules give
/// (<see cref="WagiOutcome"/>, <see cref="EventOutcome"/>), so the gateway, counters, logs and
/// rollout gates treat both alike.
/// </summary>
public sealed class ComponentRunner(ComponentHost host)
{
    private static readonly HashSet<string> NotPassed = new(StringComparer.OrdinalIgnoreCase)
    {
        "Connection", "Keep-Alive", "Transfer-Encoding", "Upgrade", "Proxy-Connection", "TE", "Trailer",
    };

    /// <summary>
    /// One request through wasi:http/incoming-handler: the full path and query, the headers and the
    /// body go in; the status, headers and body the guest set come out.
    /// </summary>
    public WagiOutcome Handle(WasmComponent component, WagiRequest request, AppLimits limits, HostGrant? grant, IReadOnlyList<KeyValuePair<string, string>> environment)
    {
        ArgumentNullException.ThrowIfNull(request);
        ArgumentNullException.ThrowIfNull(limits);
        var incoming = new Http.IncomingRequest
        {
            Method = request.Method,
            PathWithQuery = request.Query.Length > 0 ? $"{request.Path}?{request.Query}" : request.Path,
            Scheme = request.Scheme,
            Authority = request.Port is 80 or 443 ? request.Host : $"{request.Host}:{request.Port}",
            Headers = Http.Fields.From(request.Headers.Where(h => !NotPassed.Contains(h.Key)), immutable: true),
            Body = request.Body,
        };
        var (outcome, run) = host.Handle(component, incoming, limits, grant, environment);
        var log = Log(run);
        var answer = outcome.Status switch
        {
            RunStatus.TimedOut => WagiRunner.Fail(504, $"timed out after {limits.TimeoutMs} ms", log) with { Limit = WagiLimit.Timeout },
            RunStatus.Busy => WagiRunner.Busy(outcome.Error!, log) with { Limit = WagiLimit.Instances },
            RunStatus.Trapped => WagiRunner.Fail(500, $"trap: {outcome.Error}", log),
            _ => Answer(run, log),
        };
        return answer with { Notes = run.Notes };
    }

    private static WagiOutcome Answer(ComponentRun run, string? log)
    {
        var state = run.Response;
        if (state.Error is { } error)
        {
            return WagiRunner.Fail(500, $"the component answered with error-code {error}", log);
        }

        if (state.Response is not { } response)
        {
            return WagiRunner.Fail(500, "the component returned without setting its response-outparam", log);
        }

        var body = (Http.ResponseBody)response.Body.Target;
        if (body.Overflowed)
        {
            return WagiRunner.Fail(500, $"response exceeded maxResponseBytes ({body.Capacity} bytes)", log) with { Limit = WagiLimit.Response };
        }

        if (response.BodyTaken && !response.Body.Finished)
        {
            return WagiRunner.Fail(500, "the component dropped its response body without outgoing-body.finish", log);
        }

        return new WagiOutcome(new WagiResponse(response.Status, [.. response.Headers.AsText()], body.Written), null, log);
    }

    /// <summary>A command for a timer tick or topic message: the event in the environment, a message's payload on stdin.</summary>
    public EventOutcome Run(WasmComponent component, IReadOnlyList<KeyValuePair<string, string>> environment, ReadOnlyMemory<byte> payload, AppLimits limits, HostGrant? grant)
    {
        ArgumentNullException.ThrowIfNull(limits);
        var (outcome, run) = host.Run(component, payload, environment, ["event"], limits, grant);
        var log = Log(run);
        return outcome.Status switch
        {
            RunStatus.Exited when outcome.ExitCode == 0 => new EventOutcome(true, null, log) { Notes = run.Notes },
            RunStatus.Exited => new EventOutcome(false, $"exited with code {outcome.ExitCode}", log) { Notes = run.Notes },
            RunStatus.TimedOut => new EventOutcome(false, $"timed out after {limits.TimeoutMs} ms", log) { Notes = run.Notes },
            _ => new EventOutcome(false, outcome.Error, log) { Notes = run.Notes },
        };
    }

    /// <summary>
    /// A command component run as a program (<c>outpost wasm run</c>): its exit code (1 when run
    /// returns an error, 134 when it traps, 124 when it runs out of time) and what it wrote.
    /// </summary>
    public CommandOutcome RunCommand(WasmComponent component, IReadOnlyList<string> arguments, IReadOnlyList<KeyValuePair<string, string>> environment, ReadOnlyMemory<byte> stdin, AppLimits limits, HostGrant? grant)
    {
        ArgumentNullException.ThrowIfNull(limits);
        var (outcome, run) = host.Run(component, stdin, environment, arguments, limits, grant);
        var code = outcome.Status switch
        {
            RunStatus.Exited => outcome.ExitCode,
            RunStatus.TimedOut => 124,
            _ => 134,
        };
        var error = outcome.Status switch
        {
            RunStatus.TimedOut => $"timed out after {limits.TimeoutMs} ms",
            RunStatus.Exited => null,
            _ => outcome.Error,
        };
        return new CommandOutcome(code, run.Stdout.WrittenMemory, run.Stderr.WrittenMemory, error) { Notes = run.Notes };
    }

    /// <summary>What the guest wrote to stdout and stderr: its log.</summary>
    private static string? Log(ComponentRun run)
    {
        if (run.Stdout.Length == 0 && run.Stderr.Length == 0)
        {
            return null;
        }

        var text = new StringBuilder();
        text.Append(run.Stdout.ToText());
        if (run.Stdout.Length > 0 && run.Stderr.Length > 0)
        {
            text.Append('\n');
        }

        text.Append(run.Stderr.ToText());
        return text.ToString();
    }
}

/// <summary>How a command component ran as a program: its exit code, its output, and why it failed if it did.</summary>
public sealed record CommandOutcome(int ExitCode, ReadOnlyMemory<byte> Stdout, ReadOnlyMemory<byte> Stderr, string? Error)
{
    public IReadOnlyList<string> Notes { get; init; } = [];
}
