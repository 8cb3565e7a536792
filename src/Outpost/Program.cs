using System.CommandLine;
using Outpost.Commands;

// The control plane holds thousands of mostly idle streams: a thread-pool worker that runs out of
// work spins before it sleeps, and at 2,000 idle nodes that spinning was ~40 % of the server's CPU
// (perf). Read when the pool first starts, so set before anything queues work.
// DOTNET_ThreadPool_UnfairSemaphoreSpinLimit, when set, still decides.
if (args.Length > 0 && args[0] == "server" && Environment.GetEnvironmentVariable("DOTNET_ThreadPool_UnfairSemaphoreSpinLimit") is null)
{
    AppContext.SetData("System.Threading.ThreadPool.UnfairSemaphoreSpinLimit", 0);
}

// The release binary carries its native libraries; they must be routed before the first P/Invoke.
Outpost.Native.EmbeddedLibraries.Register();

var root = new RootCommand("Outpost: an edge computing platform. One control plane, a fleet of edge nodes running WebAssembly apps.")
{
    WithSubcommand(RoleCommands.Server(), InstallCommands.ServerInstall()),
    WithSubcommand(RoleCommands.Agent(), InstallCommands.AgentInstall()),
    InstallCommands.Uninstall(),
    RoleCommands.Up(),
    ClientCommands.Apply(),
    ClientCommands.Get(),
    ClientCommands.Describe(),
    ClientCommands.Delete(),
    ClientCommands.Push(),
    ClientCommands.Exec(),
    ClientCommands.Token(),
    DataCommands.Data(),
    KvCommands.Kv(),
    RolloutCommands.Rollout(),
    MonitorCommands.Top(),
    MonitorCommands.Logs(),
    MeshCommands.PortForward(),
    WasmCommands.Wasm(),
};
root.Options.Add(CommonOptions.Server);
root.Options.Add(CommonOptions.Token);
root.Options.Add(CommonOptions.Config);

// The roles handle SIGTERM and Ctrl-C themselves and stop cleanly (RoleCommands.RunUntilStoppedAsync);
// System.CommandLine would otherwise end the process 2 s after the signal, whatever it was doing.
return await root.Parse(args).InvokeAsync(new InvocationConfiguration { ProcessTerminationTimeout = null });

static Command WithSubcommand(Command command, Command subcommand)
{
    command.Subcommands.Add(subcommand);
    return command;
}
