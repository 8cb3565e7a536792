using System.Collections.Concurrent;
using System.Net.Sockets;
using System.Runtime.Versioning;
using System.Security.Cryptography;
using System.Text;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Outpost.Containers.Images;
using Outpost.Containers.Runtime;
using Outpost.Core.Resources;
using Outpost.Core.Sync;

namespace Outpost.Agent.Apps;

/// <summary>
/// Container apps on this node: images from the node's image store (fetched from the server's
/// registry), each revision a container run by runc in namespaces and a cgroup of its own, with an
/// address of its own (so two revisions, or two apps, may listen on one port). A revision is ready
/// once its port accepts connections; it is stopped (SIGTERM, then SIGKILL after the grace period)
/// when its last request is done. After a crash of the agent, what it left running is removed
/// before anything starts again.
/// </summary>
[SupportedOSPlatform("linux")]
public sealed partial class ContainerAppRuntime : IAppRuntime, IAsyncDisposable
{
    /// <summary>How long a started container has to listen on its port.</summary>
    public static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(60);

    /// <summary>Between SIGTERM and SIGKILL when a revision stops.</summary>
    public static readonly TimeSpan StopGrace = TimeSpan.FromSeconds(10);

    private readonly Runc _runc;
    private readonly string _nodeName;
    private readonly ContainerNetwork _network;
    private readonly string _bundles;
    private readonly string _prefix;
    private readonly Monitoring.LogRing _logs;
    private readonly ILogger _logger;
    private readonly ConcurrentDictionary<ContainerInstance, Task> _stopping = new();
    private readonly HttpMessageInvoker _http;
    private readonly Lazy<Task> _recovered;
    private int _serial;
    private long _bytesFetched;
    private int _running;

    public ContainerAppRuntime(string dataDir, string nodeName, Monitoring.LogRing logs, ILogger logger, string? runcPath = null)
    {
        _nodeName = nodeName;
        ArgumentException.ThrowIfNullOrEmpty(dataDir);
        var root = Path.Combine(Path.GetFullPath(dataDir), "containers");
        Images = new ImageStore(Path.Combine(root, "images"));
        _runc = new Runc(Path.Combine(root, "runc"), runcPath);
        _network = new ContainerNetwork(Path.GetFullPath(dataDir));
        _bundles = Path.Combine(root, "bundles");
        // Container ids are unique on the machine: several agents may share it (and runc's cgroups).
        _prefix = "op" + Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(Path.GetFullPath(dataDir))))[..8];
        _logs = logs;
        _logger = logger;
        _http = new HttpMessageInvoker(new SocketsHttpHandler
        {
            UseProxy = false,
            AllowAutoRedirect = false,
            UseCookies = false,
            AutomaticDecompression = System.Net.DecompressionMethods.None,
            ConnectTimeout = TimeSpan.FromSeconds(5),
            PooledConnectionIdleTimeout = TimeSpan.FromSeconds(30),
        });
        _recovered = new Lazy<Task>(RecoverAsync);
    }

    public string Name => "runc";

    /// <summary>The node's images: blobs fetched from the server, and the root filesystems unpacked from them.</summary>
    public ImageStore Images { get; }

    public string? Unavailable => _runc.Unavailable();

    internal HttpMessageInvoker Http => _http;

    /// <summary>Bytes of image blobs fetched from the server since the agent started.</summary>
    public long BytesFetched => Interlocked.Read(ref _bytesFetched);

    /// <summary>Containers started for revisions and not yet stopped.</summary>
    public int Running => Volatile.Read(ref _running);

    public IAppInstance Load(AppVersion version, ApplicationSpec spec, Action<string, string> runtimeState)
    {
        ArgumentNullException.ThrowIfNull(version);
        ArgumentNullException.ThrowIfNull(spec);
        ArgumentNullException.ThrowIfNull(runtimeState);
        return LoadAsync(version, spec, runtimeState).GetAwaiter().GetResult();
    }

    private async Task<IAppInstance> LoadAsync(AppVersion version, ApplicationSpec spec, Action<string, string> runtimeState)
    {
        await _recovered.Value;
        if (spec.ImageDigest is not { } digest)
        {
            throw new AppLoadException("the app names no image digest (the server resolves spec.image when the app is applied)");
        }

        UnpackedImage image;
        (uint Uid, uint Gid) user;
        IReadOnlyList<string> args;
        try
        {
            image = await Images.UnpackAsync(digest);
            args = ContainerSpec.ResolveArgs(image.Config, spec.Command, spec.Args);
            user = Bundle.ResolveUser(image.RootFs, image.Config.User);
        }
        catch (ImageException e)
        {
            throw new AppLoadException($"image {spec.Image} ({digest}): {e.Message}", e);
        }

        var env = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var entry in image.Config.Env)
        {
            var equals = entry.IndexOf('=', StringComparison.Ordinal);
            if (equals > 0)
            {
                env[entry[..equals]] = entry[(equals + 1)..];
            }
        }

        env.TryAdd("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
        env["PORT"] = spec.Port.ToString(System.Globalization.CultureInfo.InvariantCulture);
        foreach (var (key, value) in spec.Env)
        {
            env[key] = value;
        }

        env["OUTPOST_APP_NAME"] = version.Name;
        env["OUTPOST_APP_GENERATION"] = version.Generation.ToString(System.Globalization.CultureInfo.InvariantCulture);
        env["OUTPOST_NODE_NAME"] = _nodeName;
        var id = $"{_prefix}-{version.Name}-{version.Generation}-{Interlocked.Increment(ref _serial)}";
        var policy = spec.RestartPolicy switch
        {
            "Never" => RestartPolicy.Never,
            "OnFailure" => RestartPolicy.OnFailure,
            _ => RestartPolicy.Always,
        };
        var container = new ContainerInstance(_runc, _network, Path.Combine(_bundles, id), image, new ContainerSpec
        {
            Id = id,
            Hostname = version.Name,
            Args = args,
            Env = [.. env.Select(p => $"{p.Key}={p.Value}")],
            WorkingDir = image.Config.WorkingDir,
            Uid = user.Uid,
            Gid = user.Gid,
            MemoryBytes = spec.Limits.MemoryGiven ? (long)spec.Limits.MemoryMiB << 20 : null,
            Cpus = spec.Limits.CpuMillis / 1000.0,
        }, policy, (isError, line) => _logs.Write("info", version.Name, version.Generation, line));

        try
        {
            Interlocked.Increment(ref _running);
            await container.StartAsync();
            await WaitForPortAsync(container, spec.Port);
        }
        catch (Exception e) when (e is InvalidOperationException or IOException or TimeoutException)
        {
            _logs.Write("error", version.Name, version.Generation, $"container did not start: {e.Message}");
            await container.DisposeAsync();
            Interlocked.Decrement(ref _running);
            throw new AppLoadException($"container did not start: {e.Message}", e);
        }

        // From now on its crashes and recoveries are the app's status.
        container.StateChanged += state =>
        {
            if (state.Phase != "Stopped")
            {
                if (!state.IsRunning)
                {
                    _logs.Write("error", version.Name, version.Generation, state.Message);
                }

                runtimeState(state.Phase, state.Message);
            }
        };
        LogStarted(_logger, version.Name, version.Generation, id, container.Address!.Address, spec.Port);
        return new ContainerAppInstance(container, spec.Port, this);
    }

    /// <summary>Waits until the container accepts connections on its port; fails if it exits first or never does.</summary>
    private static async Task WaitForPortAsync(ContainerInstance container, int port)
    {
        using var timeout = new CancellationTokenSource(StartTimeout);
        while (true)
        {
            if (container.State.Phase is not ("Running" or "Starting"))
            {
                throw new InvalidOperationException(container.State.Message);
            }

            using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            try
            {
                using var attempt = CancellationTokenSource.CreateLinkedTokenSource(timeout.Token);
                attempt.CancelAfter(TimeSpan.FromSeconds(1));
                await socket.ConnectAsync(container.Address!.Address, port, attempt.Token);
                return;
            }
            catch (Exception e) when (e is SocketException or OperationCanceledException)
            {
                if (timeout.IsCancellationRequested)
                {
                    throw new TimeoutException($"the container did not listen on port {port} within {StartTimeout.TotalSeconds:0} s ({container.State.Phase}: {container.State.Message})");
                }

                await Task.Delay(20, CancellationToken.None);
            }
        }
    }

    /// <summary>
    /// Brings an image's blobs to the node before its app is reconciled: the manifest (for an index,
    /// this node's platform's), the config and every layer not already here. <paramref name="fetch"/>
    /// appends a blob's bytes from an offset to a file (resuming what an earlier fetch left); each is
    /// verified against its digest before it is kept. Returns the bytes fetched.
    /// </summary>
    public async Task<long> EnsureImageAsync(string digest, Func<string, long, string, CancellationToken, Task> fetch, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(fetch);
        if (Unavailable is not null)
        {
            return 0; // the app fails to load with the reason; nothing to fetch for it
        }

        long fetched = 0;
        async Task GetAsync(string blob, long? size)
        {
            if (Images.HasBlob(blob))
            {
                return;
            }

            var partial = Images.PartialPath(blob);
            var offset = File.Exists(partial) ? new FileInfo(partial).Length : 0;
            await fetch(blob, offset, partial, cancellationToken);
            var got = new FileInfo(partial).Length - offset;
            fetched += got;
            Interlocked.Add(ref _bytesFetched, got);
            Images.CommitPartial(blob, size);
        }

        await GetAsync(digest, null);
        var manifest = ImageManifest.Parse(await File.ReadAllBytesAsync(Images.BlobPath(digest), cancellationToken));
        if (manifest.IsIndex)
        {
            var chosen = manifest.SelectPlatform(ImageManifest.NodeArchitecture);
            await GetAsync(chosen.Digest, chosen.Size);
            manifest = ImageManifest.Parse(await File.ReadAllBytesAsync(Images.BlobPath(chosen.Digest), cancellationToken));
        }

        foreach (var blob in Images.MissingLayers(manifest))
        {
            await GetAsync(blob.Digest, blob.Size);
        }

        return fetched;
    }

    /// <summary>Stops a revision's container in the background: the registry lets go of it under its lock.</summary>
    internal void Stop(ContainerInstance container)
    {
        var stop = Task.Run(async () =>
        {
            try
            {
                await container.StopAsync(StopGrace);
            }
            catch (Exception e) when (e is InvalidOperationException or IOException)
            {
                LogStopFailed(_logger, container.Id, e.Message);
            }
            finally
            {
                Interlocked.Decrement(ref _running);
            }
        });
        _stopping[container] = stop;
        stop.ContinueWith(_ => _stopping.TryRemove(container, out Task? _), TaskScheduler.Default);
    }

    /// <summary>What a crash of the agent left: containers in its runc state, their networks and cgroups.</summary>
    private async Task RecoverAsync()
    {
        if (Unavailable is not null)
        {
            return;
        }

        foreach (var id in await _runc.ListAsync())
        {
            await _runc.DeleteAsync(id);
            LogRemovedLeftover(_logger, id);
        }

        await _network.ReclaimAsync(new HashSet<string>(StringComparer.Ordinal));
        var leftovers = Directory.Exists("/sys/fs/cgroup")
            ? Directory.EnumerateDirectories("/sys/fs/cgroup")
                .Select(controller => Path.Combine(controller, "outpost"))
                .Where(Directory.Exists)
                .SelectMany(parent => Directory.EnumerateDirectories(parent, _prefix + "-*"))
                .Select(Path.GetFileName)
                .Distinct(StringComparer.Ordinal)
            : [];
        foreach (var id in leftovers)
        {
            using var cgroup = new ContainerCgroup(id!, null);
            cgroup.Remove();
        }

        if (Directory.Exists(_bundles))
        {
            Directory.Delete(_bundles, recursive: true);
        }
    }

    public async ValueTask DisposeAsync()
    {
        await Task.WhenAll(_stopping.Values);
        _http.Dispose();
        Images.Dispose();
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "App '{App}' revision {Generation} runs in container {Id} at {Address}:{Port}")]
    private static partial void LogStarted(ILogger logger, string app, long generation, string id, System.Net.IPAddress address, int port);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Container {Id} did not stop cleanly: {Reason}")]
    private static partial void LogStopFailed(ILogger logger, string id, string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "Removed container {Id}, left running by an earlier agent")]
    private static partial void LogRemovedLeftover(ILogger logger, string id);
}

/// <summary>A container revision: requests are proxied to its address and port, streamed both ways.</summary>
[SupportedOSPlatform("linux")]
public sealed class ContainerAppInstance(ContainerInstance container, int port, ContainerAppRuntime runtime) : IAppInstance
{
    private static readonly HashSet<string> HopByHop = new(StringComparer.OrdinalIgnoreCase)
    {
        "Connection", "Keep-Alive", "Transfer-Encoding", "Upgrade", "Proxy-Connection", "TE", "Trailer", "Host",
    };

    private int _disposed;

    public string Source => $"container {container.Id} at {container.Address!.Address}:{port}";

    internal ContainerInstance Container => container;

    public async Task<ServeOutcome> ServeAsync(HttpContext context, AppRequest request)
    {
        ArgumentNullException.ThrowIfNull(context);
        ArgumentNullException.ThrowIfNull(request);
        var app = request.App;
        var target = new Uri($"http://{container.Address!.Address}:{port}{Unprefixed(request.Route, request.Path)}{context.Request.QueryString}");
        using var message = new HttpRequestMessage(new HttpMethod(context.Request.Method), target);
        var hasBody = context.Request.ContentLength > 0 || context.Request.Headers.TransferEncoding.Count > 0;
        if (hasBody)
        {
            message.Content = new StreamContent(context.Request.Body);
        }

        foreach (var header in context.Request.Headers)
        {
            if (HopByHop.Contains(header.Key))
            {
                continue;
            }

            if (!message.Headers.TryAddWithoutValidation(header.Key, (IEnumerable<string>)header.Value!) && message.Content is not null)
            {
                message.Content.Headers.TryAddWithoutValidation(header.Key, (IEnumerable<string>)header.Value!);
            }
        }

        message.Headers.Host = context.Request.Host.Value;
        message.Headers.TryAddWithoutValidation("X-Forwarded-For", context.Connection.RemoteIpAddress?.ToString());
        message.Headers.TryAddWithoutValidation("X-Forwarded-Proto", context.Request.Scheme);
        if (request.Route.Length > 1)
        {
            message.Headers.TryAddWithoutValidation("X-Forwarded-Prefix", request.Route.TrimEnd('/'));
        }

        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted);
        timeout.CancelAfter(app.Spec.Limits.TimeoutMs);
        HttpResponseMessage response;
        try
        {
            response = await runtime.Http.SendAsync(message, timeout.Token);
        }
        catch (OperationCanceledException) when (!context.RequestAborted.IsCancellationRequested)
        {
            await WasmAppInstance.WriteTextAsync(context, 504, $"504 gateway timeout: app {app.Name} did not answer within {app.Spec.Limits.TimeoutMs} ms\n");
            return new ServeOutcome(504, Wasm.Wagi.WagiLimit.Timeout);
        }
        catch (HttpRequestException e)
        {
            request.Services.Logs.Write("error", app.Name, app.Version.Generation, $"{context.Request.Method} {request.Path}: the container did not answer: {e.Message}");
            await WasmAppInstance.WriteTextAsync(context, 502, $"502 bad gateway: app {app.Name}'s container did not answer on port {port} ({container.State.Phase}: {e.Message})\n");
            return new ServeOutcome(502);
        }

        using (response)
        {
            context.Response.StatusCode = (int)response.StatusCode;
            foreach (var header in response.Headers.Concat(response.Content.Headers))
            {
                if (!HopByHop.Contains(header.Key))
                {
                    context.Response.Headers[header.Key] = header.Value.ToArray();
                }
            }

            await response.Content.CopyToAsync(context.Response.Body, context.RequestAborted);
            return new ServeOutcome((int)response.StatusCode);
        }
    }

    /// <summary>
    /// GETs the probe's path: the expected status passes, another fails at once, except 503 (not ready
    /// yet) and no answer at all, which are tried again for up to the start timeout.
    /// </summary>
    public async Task<string?> ProbeAsync(LoadedApp app, ReadinessProbe probe, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(app);
        ArgumentNullException.ThrowIfNull(probe);
        var deadline = DateTime.UtcNow + ContainerAppRuntime.StartTimeout;
        var last = "";
        while (true)
        {
            try
            {
                using var message = new HttpRequestMessage(HttpMethod.Get, new Uri($"http://{container.Address!.Address}:{port}{Unprefixed(app.Spec.Http!.Route, probe.Path)}"));
                using var attempt = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                attempt.CancelAfter(TimeSpan.FromSeconds(5));
                using var response = await runtime.Http.SendAsync(message, attempt.Token);
                if ((int)response.StatusCode == probe.ExpectStatus)
                {
                    return null;
                }

                last = $"GET {probe.Path} answered {(int)response.StatusCode} (expected {probe.ExpectStatus})";
                if (response.StatusCode != System.Net.HttpStatusCode.ServiceUnavailable)
                {
                    return last;
                }
            }
            catch (Exception e) when (e is HttpRequestException or OperationCanceledException && !cancellationToken.IsCancellationRequested)
            {
                last = $"GET {probe.Path} failed: {e.Message}";
            }

            if (DateTime.UtcNow > deadline || !container.State.IsRunning)
            {
                return container.State.IsRunning ? last : $"{last}; {container.State.Message}";
            }

            await Task.Delay(100, cancellationToken);
        }
    }

    /// <summary>
    /// The path as the container sees it: its route taken off (a container serves from / wherever the
    /// node mounts it; X-Forwarded-Prefix says where), so images made for any server run unchanged.
    /// </summary>
    internal static string Unprefixed(string route, string path)
    {
        var prefix = route.TrimEnd('/');
        return prefix.Length == 0 || !path.StartsWith(prefix, StringComparison.Ordinal) ? path
            : path.Length == prefix.Length ? "/" : path[prefix.Length..];
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            runtime.Stop(container);
        }
    }
}
