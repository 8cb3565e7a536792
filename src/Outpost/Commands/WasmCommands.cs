using System.CommandLine;
using Outpost.Wasm.Hosting;

namespace Outpost.Commands;

/// <summary>`outpost wasm compile`: the agent's compiler, run as a child process (Outpost.Wasm's ChildCompiler).</summary>
internal static class WasmCommands
{
    public static Command Wasm()
    {
        var name = new Option<string>("--name") { Description = "The module's name, for messages", DefaultValueFactory = _ => "module" };
        var output = new Option<FileInfo>("--output") { Description = "Where to write the precompiled module", Required = true };
        var instances = new Option<int>("--instances") { Description = "The engine's pool slots (as the agent's --max-instances)", DefaultValueFactory = _ => new WasmHostOptions().MaxInstances };
        var maxMemory = new Option<int>("--max-memory-mib") { Description = "The engine's memory ceiling per instance", DefaultValueFactory = _ => new WasmHostOptions().MaxMemoryMiB };
        var maxStack = new Option<int>("--max-stack-bytes") { Description = "The engine's guest stack limit", DefaultValueFactory = _ => new WasmHostOptions().MaxStackBytes };
        var keepResident = new Option<int>("--keep-resident-bytes") { Description = "Linear memory kept resident per pool slot", DefaultValueFactory = _ => new WasmHostOptions().KeepResidentBytes };
        var pooling = new Option<bool>("--pooling") { Description = "Configure the engine with the pooling allocator", DefaultValueFactory = _ => true };
        var compile = new Command("compile",
            "Validate and compile a module read from stdin for this node's engine, and write it precompiled; exits 3 naming what is wrong with a module that cannot run here. The agent runs this itself so that compiling never grows its own memory")
        {
            name, output, instances, maxMemory, maxStack, keepResident, pooling,
        };
        compile.SetAction(result =>
        {
            var options = new WasmHostOptions
            {
                MaxInstances = result.GetValue(instances),
                MaxMemoryMiB = result.GetValue(maxMemory),
                MaxStackBytes = result.GetValue(maxStack),
                KeepResidentBytes = result.GetValue(keepResident),
                UsePooling = result.GetValue(pooling),
            };
            try
            {
                options.Validate();
            }
            catch (ArgumentOutOfRangeException e)
            {
                Console.Error.WriteLine($"outpost wasm compile: {e.Message}");
                return 2;
            }

            using var input = new MemoryStream();
            Console.OpenStandardInput().CopyTo(input);
            using var host = new WasmHost(options);
            try
            {
                host.CompileToFile(result.GetValue(name)!, input.GetBuffer().AsSpan(0, (int)input.Length), result.GetValue(output)!.FullName);
                return 0;
            }
            catch (ModuleRejectedException e)
            {
                Console.Error.WriteLine(e.Message);
                return ChildCompiler.RejectedExitCode;
            }
        });
        return new Command("wasm", "WebAssembly tools of the node's engine") { compile };
    }
}
