using System.Runtime.InteropServices;
using Microsoft.ML.OnnxRuntime;

namespace Outpost.Wasm.Nn;

/// <summary>
/// Finds and loads ONNX Runtime's native library, which is optional on a node: without it the
/// node reports <c>ai: unavailable</c> and apps that need models are placed elsewhere. The
/// library is looked for where it was named, else next to the executable (where the release
/// puts it as an optional extra file), else in the NuGet layout of a build, else by the system's
/// loader. It is loaded with NativeLibrary before any ONNX Runtime type is touched: a failed
/// type initializer could never be retried in the process.
/// </summary>
public static class OnnxRuntimeLibrary
{
    private static readonly Lock Gate = new();
    private static OnnxRuntimeStatus? _status;

    /// <summary>The library's file name on Linux.</summary>
    public const string FileName = "libonnxruntime.so";

    /// <summary>What the first call found; later calls return the same (a process loads the library once).</summary>
    public static OnnxRuntimeStatus Load(string? path = null)
    {
        lock (Gate)
        {
            return _status ??= TryLoad(path);
        }
    }

    /// <summary>
    /// Where the library is, without loading it (a node reports ai available from this at start,
    /// and maps the library's 29 MB only once an app needs it); null when it is nowhere.
    /// </summary>
    public static string? Locate(string? path = null)
    {
        if (path is not null)
        {
            return File.Exists(path) ? Path.GetFullPath(path) : null;
        }

        var arch = RuntimeInformation.ProcessArchitecture == Architecture.Arm64 ? "arm64" : "x64";
        IEnumerable<string> candidates =
        [
            Path.Combine(AppContext.BaseDirectory, FileName),
            Path.Combine(AppContext.BaseDirectory, "runtimes", $"linux-{arch}", "native", FileName),
            .. (Environment.GetEnvironmentVariable("LD_LIBRARY_PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries).Select(d => Path.Combine(d, FileName)),
        ];
        return candidates.FirstOrDefault(File.Exists);
    }

    private static OnnxRuntimeStatus TryLoad(string? path)
    {
        var found = Locate(path);
        if (found is null)
        {
            return new OnnxRuntimeStatus(false, null, path is null
                ? $"{FileName} was not found next to the executable or on LD_LIBRARY_PATH"
                : $"{path} does not exist");
        }

        if (!NativeLibrary.TryLoad(found, out var handle))
        {
            return new OnnxRuntimeStatus(false, null, $"{found} could not be loaded as a native library");
        }

        try
        {
            OrtEnv.DisableDllImportResolver = true;
            NativeLibrary.SetDllImportResolver(typeof(OrtEnv).Assembly, (name, _, _) => name == "onnxruntime" ? handle : 0);
            var version = OrtEnv.Instance().GetVersionString();
            return new OnnxRuntimeStatus(true, version, null) { Path = found };
        }
        catch (Exception e) when (e is TypeInitializationException or DllNotFoundException or EntryPointNotFoundException or InvalidOperationException or OnnxRuntimeException)
        {
            return new OnnxRuntimeStatus(false, null, $"{found} is not a usable ONNX Runtime {typeof(OrtEnv).Assembly.GetName().Version?.ToString(2)} or later: {(e.InnerException ?? e).Message}");
        }
    }
}

/// <summary>Whether ONNX Runtime is usable here: its version, or why not.</summary>
public sealed record OnnxRuntimeStatus(bool Available, string? Version, string? Problem)
{
    public string? Path { get; init; }
}
