using System.Diagnostics;
using System.Globalization;

namespace Outpost.Wasm.Hosting;

/// <summary>
/// Compiles a module in a child process (`outpost wasm compile`), which writes the precompiled
/// file and exits. Cranelift's code and working memory then never become the agent's: a node
/// that compiled its apps holds no more memory than one that loaded them from the cache
/// (measured: ~8 MB of the agent's RSS with the three samples), and a compile that runs out of
/// memory or crashes takes down the child, not the node's serving process.
/// </summary>
public static class ChildCompiler
{
    /// <summary>The child's exit code for a module it refused; its stderr then holds the reason.</summary>
    public const int RejectedExitCode = 3;

    /// <summary>How long a compile may take before the child is killed.</summary>
    public static readonly TimeSpan Timeout = TimeSpan.FromMinutes(5);

    /// <summary>The arguments after the command that make the child compile as <paramref name="options"/>'s engine does.</summary>
    internal static IReadOnlyList<string> Arguments(WasmHostOptions options, string name, string output) =>
    [
        "wasm", "compile", "--name", name, "--output", output,
        "--instances", options.MaxInstances.ToString(CultureInfo.InvariantCulture),
        "--max-memory-mib", options.MaxMemoryMiB.ToString(CultureInfo.InvariantCulture),
        "--max-stack-bytes", options.MaxStackBytes.ToString(CultureInfo.InvariantCulture),
        "--keep-resident-bytes", options.KeepResidentBytes.ToString(CultureInfo.InvariantCulture),
        "--pooling", options.UsePooling ? "true" : "false",
    ];

    /// <summary>
    /// Runs the compile; null when <paramref name="output"/> was written, else why the child failed.
    /// A module the child refused throws <see cref="ModuleRejectedException"/> with its reason.
    /// </summary>
    internal static string? Compile(IReadOnlyList<string> command, WasmHostOptions options, string name, byte[] wasm, string output)
    {
        var start = new ProcessStartInfo(command[0])
        {
            RedirectStandardInput = true,
            RedirectStandardError = true,
            RedirectStandardOutput = true,
            UseShellExecute = false,
        };
        foreach (var argument in command.Skip(1).Concat(Arguments(options, name, output)))
        {
            start.ArgumentList.Add(argument);
        }

        Process process;
        try
        {
            process = Process.Start(start) ?? throw new InvalidOperationException("no process started");
        }
        catch (Exception e) when (e is System.ComponentModel.Win32Exception or InvalidOperationException)
        {
            return $"could not start the compiler ({command[0]}): {e.Message}";
        }

        using (process)
        {
            var errors = process.StandardError.ReadToEndAsync();
            var said = process.StandardOutput.ReadToEndAsync();
            try
            {
                process.StandardInput.BaseStream.Write(wasm);
                process.StandardInput.Close();
            }
            catch (IOException)
            {
                // The child ended before reading it all: its exit code and stderr say why.
            }

            if (!process.WaitForExit(Timeout))
            {
                process.Kill(entireProcessTree: true);
                process.WaitForExit();
                return $"the compiler took longer than {Timeout.TotalMinutes:0} min and was stopped";
            }

            var error = errors.GetAwaiter().GetResult().Trim();
            _ = said.GetAwaiter().GetResult();
            if (process.ExitCode == RejectedExitCode)
            {
                throw new ModuleRejectedException(error);
            }

            if (process.ExitCode != 0 || !File.Exists(output))
            {
                return $"the compiler exited with code {process.ExitCode}{(error.Length > 0 ? ": " + error : "")}";
            }

            return null;
        }
    }
}
