using System.Collections.Concurrent;
using System.Net;
using Outpost.Containers.Images;
using Outpost.Containers.Runtime;

namespace Outpost.Containers.Tests.Runtime;

/// <summary>Real containers: the sample's image unpacked here and run by runc in its own namespaces and cgroup.</summary>
public sealed class ContainerInstanceTests : IDisposable
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(20);
    private readonly TempDir _temp = new();
    private readonly ImageStore _store;
    private readonly Runc _runc;
    private readonly ContainerNetwork _network;
    private readonly ConcurrentQueue<string> _log = new();
    private readonly List<ContainerInstance> _started = [];

    public ContainerInstanceTests()
    {
        _store = new ImageStore(Path.Combine(_temp.Path, "images"));
        _runc = new Runc(Path.Combine(_temp.Path, "runc"));
        _network = new ContainerNetwork(_temp.Path);
    }

    private static void SkipUnlessContainersRunHere()
    {
        Skip.IfNot(Environment.IsPrivilegedProcess, "containers need root");
        var unavailable = new Runc(Path.GetTempPath()).Unavailable();
        Skip.If(unavailable is not null, unavailable);
        Skip.If(HelloSample.Bytes is null, "gcc is not installed: the sample cannot be built");
    }

    private async Task<ContainerInstance> StartAsync(string name, RestartPolicy policy = RestartPolicy.Always, long? memory = null, string greeting = "hello", string[]? env = null)
    {
        var image = HelloSample.Image(greeting);
        await image.StoreAsync(_store);
        var unpacked = await _store.UnpackAsync(image.ManifestDigest);
        var id = $"test-{name}-{Guid.NewGuid():N}"[..40];
        var container = new ContainerInstance(_runc, _network, Path.Combine(_temp.Path, "bundles", id), unpacked, new ContainerSpec
        {
            Id = id,
            Hostname = name,
            Args = ContainerSpec.ResolveArgs(unpacked.Config, [], []),
            Env = [.. unpacked.Config.Env, "OUTPOST_NODE_NAME=test-node", .. env ?? []],
            MemoryBytes = memory,
        }, policy, (_, line) => _log.Enqueue($"{name}: {line}"));
        _started.Add(container);
        await container.StartAsync();
        return container;
    }

    private static async Task<(HttpStatusCode Status, string Body)> GetAsync(ContainerInstance container, string path)
    {
        using var client = new HttpClient { Timeout = TimeSpan.FromSeconds(5) };
        var deadline = DateTime.UtcNow + Patience;
        while (true)
        {
            try
            {
                using var response = await client.GetAsync(new Uri($"http://{container.Address!.Address}:8080{path}"));
                return (response.StatusCode, await response.Content.ReadAsStringAsync());
            }
            catch (HttpRequestException e)
            {
                if (DateTime.UtcNow > deadline)
                {
                    throw new HttpRequestException($"{e.Message}; the container is {container.State}", e);
                }

                await Task.Delay(50); // not listening yet
            }
        }
    }

    private static async Task<ContainerState> WaitForAsync(ContainerInstance container, Func<ContainerState, bool> condition)
    {
        var reached = new TaskCompletionSource<ContainerState>(TaskCreationOptions.RunContinuationsAsynchronously);
        void Check(ContainerState state)
        {
            if (condition(state))
            {
                reached.TrySetResult(state);
            }
        }

        container.StateChanged += Check;
        try
        {
            Check(container.State);
            return await reached.Task.WaitAsync(Patience);
        }
        finally
        {
            container.StateChanged -= Check;
        }
    }

    [SkippableFact]
    public async Task TwoContainers_ListenOnTheSamePort_EachInItsOwnNetwork_AndAnswer()
    {
        SkipUnlessContainersRunHere();
        var first = await StartAsync("first", greeting: "hello");
        var second = await StartAsync("second", greeting: "bonjour");

        Assert.NotEqual(first.Address!.Address, second.Address!.Address);
        Assert.Equal((HttpStatusCode.OK, "hello from container on test-node (revision ?)\n"), await GetAsync(first, "/"));
        Assert.Equal((HttpStatusCode.OK, "bonjour from container on test-node (revision ?)\n"), await GetAsync(second, "/"));
        Assert.Contains(_log, l => l == "first: listening on :8080");
    }

    [SkippableFact]
    public async Task TheRootIsReadOnly_TmpIsWritable_AndExecRunsInTheContainer()
    {
        SkipUnlessContainersRunHere();
        var container = await StartAsync("rofs");

        var root = await GetAsync(container, "/write?path=/hello.new");
        var tmp = await GetAsync(container, "/write?path=/tmp/scratch");

        Assert.Equal((HttpStatusCode.Forbidden, "/hello.new: Read-only file system\n"), root);
        Assert.Equal((HttpStatusCode.Created, "/tmp/scratch: written\n"), tmp);
        Assert.False(File.Exists(Path.Combine(container.Image.RootFs, "hello.new")));

        // A second server in the same container finds the port taken: its output and exit code come back.
        var (exitCode, output, error) = await container.ExecAsync(["/hello"]);
        Assert.Equal(2, exitCode);
        Assert.Contains("listen: Address already in use", output + error, StringComparison.Ordinal);
    }

    [SkippableFact]
    public async Task AContainerThatExits_IsInCrashLoopBackOff_WithItsCodeAndLastOutput_ThenRunsAgain()
    {
        SkipUnlessContainersRunHere();
        var container = await StartAsync("crash");
        await GetAsync(container, "/exit?code=3");

        var crashed = await WaitForAsync(container, s => s.Phase == "CrashLoopBackOff");
        Assert.Equal(3, crashed.ExitCode);
        Assert.Equal(1, crashed.Restarts);
        Assert.Contains("exited with code 3", crashed.Message, StringComparison.Ordinal);
        Assert.Contains("exiting with 3 as asked", crashed.Message, StringComparison.Ordinal);

        await WaitForAsync(container, s => s.IsRunning);
        Assert.Equal(HttpStatusCode.OK, (await GetAsync(container, "/")).Status);
    }

    [SkippableFact]
    public async Task AContainerOverItsMemoryLimit_IsKilled_AndReportedAsSuch()
    {
        SkipUnlessContainersRunHere();
        var container = await StartAsync("oom", RestartPolicy.Never, memory: 32L << 20, env: ["ALLOC_MIB=64"]);

        var state = await WaitForAsync(container, s => s.Phase is "Failed" or "Completed");

        Assert.True(state.OomKilled, state.ToString());
        Assert.Equal(137, state.ExitCode);
        Assert.Contains($"was killed for exceeding its memory limit ({32L << 20} bytes)", state.Message, StringComparison.Ordinal);
    }

    [SkippableFact]
    public async Task Stopping_EndsTheContainer_AndRemovesItsNetworkAndCgroup()
    {
        SkipUnlessContainersRunHere();
        var container = await StartAsync("stop", memory: 64L << 20);
        await GetAsync(container, "/");
        var address = container.Address!;
        Assert.True(File.Exists(address.NamespacePath));

        await container.StopAsync(TimeSpan.FromSeconds(10));

        Assert.Equal("Stopped", container.State.Phase);
        Assert.False(File.Exists(address.NamespacePath));
        Assert.False(Directory.Exists($"/sys/fs/cgroup/memory/outpost/{container.Id}"));
        Assert.Empty(await _runc.ListAsync());
    }

    public void Dispose()
    {
        foreach (var container in _started)
        {
            container.DisposeAsync().AsTask().GetAwaiter().GetResult();
        }

        _store.Dispose();
        _temp.Dispose();
    }
}
