using System.Diagnostics;
using System.Globalization;
using Outpost.Containers.Images;

namespace Outpost.Containers.Runtime;

/// <summary>When a container that exited is started again (Kubernetes' restartPolicy).</summary>
public enum RestartPolicy
{
    Always,
    OnFailure,
    Never,
}

/// <summary>
/// A container's state as the node reports it. Phase: Starting, Running, CrashLoopBackOff (exited,
/// restarting after a back-off), Completed, Failed or Stopped.
/// </summary>
public sealed record ContainerState(string Phase, string Message, int? ExitCode = null, bool OomKilled = false, int Restarts = 0)
{
    public bool IsRunning => Phase == "Running";
}

/// <summary>
/// One container of an app on this node, supervised: runc runs it in its own namespaces and cgroup;
/// when it exits it is started again after a back-off that doubles from 1 s to 5 min (reset once it
/// has run for a minute), as its restart policy says; stopping sends SIGTERM, then SIGKILL after the
/// grace period. Its output goes, line by line, to the log sink.
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class ContainerInstance : IAsyncDisposable
{
    private static readonly TimeSpan FirstBackOff = TimeSpan.FromSeconds(1);
    private static readonly TimeSpan MaxBackOff = TimeSpan.FromMinutes(5);
    private static readonly TimeSpan StableRun = TimeSpan.FromMinutes(1);
    private const int KeptLines = 10;

    private readonly Runc _runc;
    private readonly ContainerNetwork _network;
    private readonly string _bundle;
    private readonly UnpackedImage _image;
    private readonly ContainerSpec _spec;
    private readonly RestartPolicy _policy;
    private readonly Action<bool, string> _log;
    private readonly ContainerCgroup _cgroup;
    private readonly CancellationTokenSource _stopping = new();
    private readonly Queue<string> _lastLines = new();
    private readonly TaskCompletionSource _firstStart = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly Lock _gate = new();
    private Task? _supervisor;
    private Process? _current;
    private volatile ContainerState _state = new("Starting", "starting");

    /// <remarks>
    /// The bundle is written to <paramref name="bundleDirectory"/> (the container's own); <paramref name="log"/>
    /// receives each line the container writes (true for stderr).
    /// </remarks>
    public ContainerInstance(Runc runc, ContainerNetwork network, string bundleDirectory, UnpackedImage image, ContainerSpec spec,
        RestartPolicy policy, Action<bool, string> log)
    {
        ArgumentNullException.ThrowIfNull(spec);
        _runc = runc;
        _network = network;
        _bundle = bundleDirectory;
        _image = image;
        _spec = spec;
        _policy = policy;
        _log = log;
        _cgroup = new ContainerCgroup(spec.Id, spec.MemoryBytes);
    }

    public string Id => _spec.Id;

    public UnpackedImage Image => _image;

    /// <summary>The container's own address (its network namespace's end of the link), once started.</summary>
    public ContainerAddress? Address { get; private set; }

    public ContainerState State => _state;

    /// <summary>Raised whenever <see cref="State"/> changes (on a supervisor thread).</summary>
    public event Action<ContainerState>? StateChanged;

    /// <summary>Creates the network and starts supervising; returns once runc has been started the first time.</summary>
    public async Task StartAsync(CancellationToken cancellationToken = default)
    {
        if (_supervisor is not null)
        {
            throw new InvalidOperationException($"container {Id} was started already");
        }

        Address = await _network.CreateAsync(Id, cancellationToken).ConfigureAwait(false);
        try
        {
            Bundle.Write(_bundle, _image.RootFs, _spec with { MemoryBytes = _cgroup.RuncMemoryBytes }, Address, _cgroup.RuncPath);
        }
        catch
        {
            await _network.DeleteAsync(Address, CancellationToken.None).ConfigureAwait(false);
            throw;
        }

        _supervisor = Task.Run(SuperviseAsync, CancellationToken.None);
        await _firstStart.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Memory the container uses now, if it runs.</summary>
    public long? MemoryBytes() => _cgroup.MemoryBytes();

    /// <summary>Runs a command in the container (as <c>runc exec</c>): its exit code and output.</summary>
    public Task<(int ExitCode, string Output, string Error)> ExecAsync(IReadOnlyList<string> command, CancellationToken cancellationToken = default) =>
        _state.IsRunning ? _runc.ExecAsync(Id, command, cancellationToken)
            : throw new InvalidOperationException($"container {Id} is not running ({_state.Phase}: {_state.Message})");

    /// <summary>Stops the container (SIGTERM, then SIGKILL after <paramref name="grace"/>) and removes all it had on the node.</summary>
    public async Task StopAsync(TimeSpan grace)
    {
        Process? process;
        lock (_gate)
        {
            _stopping.Cancel();
            process = _current;
        }

        if (process is { HasExited: false })
        {
            await _runc.KillAsync(Id, "TERM").ConfigureAwait(false);
            using var timeout = new CancellationTokenSource(grace);
            try
            {
                await process.WaitForExitAsync(timeout.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                await _runc.KillAsync(Id, "KILL").ConfigureAwait(false);
            }
        }

        if (_supervisor is not null)
        {
            await _supervisor.ConfigureAwait(false);
        }

        await _runc.DeleteAsync(Id).ConfigureAwait(false);
        _cgroup.Remove();
        if (Address is not null)
        {
            await _network.DeleteAsync(Address).ConfigureAwait(false);
        }

        SetState(_state with { Phase = "Stopped", Message = "stopped" });
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync(TimeSpan.FromSeconds(10)).ConfigureAwait(false);
        _stopping.Dispose();
        _cgroup.Dispose();
    }

    private async Task SuperviseAsync()
    {
        var backOff = FirstBackOff;
        var restarts = 0;
        while (!_stopping.IsCancellationRequested)
        {
            var started = Stopwatch.StartNew();
            int exitCode;
            bool oomKilled;
            try
            {
                await _runc.DeleteAsync(Id).ConfigureAwait(false); // a leftover of a crash, or of the last run
                _cgroup.Remove();
                _cgroup.Prepare();
                Process process;
                lock (_gate)
                {
                    if (_stopping.IsCancellationRequested)
                    {
                        break;
                    }

                    process = _current = _runc.Run(Id, _bundle);
                }

                var stdout = PumpAsync(process.StandardOutput, isError: false);
                var stderr = PumpAsync(process.StandardError, isError: true);
                SetState(new ContainerState("Running", $"running since {DateTimeOffset.UtcNow:O}", Restarts: restarts));
                _firstStart.TrySetResult();
                await process.WaitForExitAsync().ConfigureAwait(false);
                await Task.WhenAll(stdout, stderr).ConfigureAwait(false);
                exitCode = process.ExitCode;
                // A kill for memory of some other process in the container does not end it; only its main process's does.
                oomKilled = exitCode == 128 + 9 && _cgroup.OutOfMemory();
                if (!_stopping.IsCancellationRequested)
                {
                    lock (_gate)
                    {
                        _current = null;
                    }

                    process.Dispose();
                }
            }
            catch (Exception e) when (e is InvalidOperationException or System.ComponentModel.Win32Exception or IOException)
            {
                exitCode = -1;
                oomKilled = false;
                Remember($"could not start the container: {e.Message}");
            }

            if (_stopping.IsCancellationRequested)
            {
                break;
            }

            var failed = exitCode != 0;
            var what = oomKilled ? $"was killed for exceeding its memory limit ({_spec.MemoryBytes} bytes)"
                : exitCode > 128 ? $"was killed by signal {exitCode - 128}"
                : $"exited with code {exitCode}";
            var message = $"the container {what} after {started.Elapsed.TotalSeconds.ToString("0.0", CultureInfo.InvariantCulture)} s{LastLines()}";
            if (_policy == RestartPolicy.Never || (_policy == RestartPolicy.OnFailure && !failed))
            {
                SetState(new ContainerState(failed ? "Failed" : "Completed", message, exitCode, oomKilled, restarts));
                _firstStart.TrySetResult();
                break;
            }

            backOff = started.Elapsed >= StableRun ? FirstBackOff : backOff;
            restarts++;
            SetState(new ContainerState("CrashLoopBackOff", $"{message}; restart {restarts} in {backOff.TotalSeconds:0} s", exitCode, oomKilled, restarts));
            _firstStart.TrySetResult();
            try
            {
                await Task.Delay(backOff, _stopping.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                break;
            }

            backOff = TimeSpan.FromTicks(Math.Min(MaxBackOff.Ticks, backOff.Ticks * 2));
        }

        _firstStart.TrySetResult();
    }

    private async Task PumpAsync(StreamReader reader, bool isError)
    {
        while (await reader.ReadLineAsync().ConfigureAwait(false) is { } line)
        {
            Remember(line);
            _log(isError, line);
        }
    }

    private void Remember(string line)
    {
        lock (_lastLines)
        {
            _lastLines.Enqueue(line);
            while (_lastLines.Count > KeptLines)
            {
                _lastLines.Dequeue();
            }
        }
    }

    private string LastLines()
    {
        lock (_lastLines)
        {
            return _lastLines.Count == 0 ? "" : "; last output: " + string.Join(" | ", _lastLines.TakeLast(3));
        }
    }

    private void SetState(ContainerState state)
    {
        _state = state;
        StateChanged?.Invoke(state);
    }
}
