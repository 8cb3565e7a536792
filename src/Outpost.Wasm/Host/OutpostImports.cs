using System.Text;
using Wasmtime;

namespace Outpost.Wasm.Host;

/// <summary>
/// Host functions in import module <c>outpost</c>. Each needs a capability the app declares;
/// a module importing one it was not granted is refused at apply time and at load.
/// Strings and bytes cross as (pointer, length) pairs in the guest's memory. Reads that
/// return data take a buffer and return the full length (or -1 when absent): a result larger
/// than the buffer is not written, so the guest can retry with a bigger one.
/// </summary>
public static class OutpostImports
{
    public const string ModuleName = "outpost";

    /// <summary>Function → the capability it needs.</summary>
    public static IReadOnlyDictionary<string, string> Capabilities { get; } = new Dictionary<string, string>(StringComparer.Ordinal)
    {
        ["log"] = "log",
        ["config_get"] = "config",
        ["secret_get"] = "secrets",
        ["kv_get"] = "kv",
        ["kv_set"] = "kv",
        ["kv_delete"] = "kv",
        ["publish"] = "publish",
        ["now_ms"] = "clock",
        ["http_request"] = "http-out",
        ["http_response_body"] = "http-out",
        ["http_response_header"] = "http-out",
    };

    private const int MaxStringBytes = 64 * 1024;

    /// <summary>Imports of <c>outpost</c> that the granted capabilities do not cover, as messages.</summary>
    public static IReadOnlyList<string> Ungranted(IEnumerable<(string Module, string Name)> imports, IReadOnlySet<string> granted)
    {
        ArgumentNullException.ThrowIfNull(imports);
        ArgumentNullException.ThrowIfNull(granted);
        var problems = new List<string>();
        foreach (var (module, name) in imports)
        {
            if (module == Nn.WasiNn.ModuleName && !granted.Contains(Nn.WasiNn.Capability))
            {
                problems.Add($"import '{module}.{name}' (WASI-NN) needs capability '{Nn.WasiNn.Capability}', which spec.capabilities does not grant");
                continue;
            }

            if (module != ModuleName)
            {
                continue;
            }

            if (!Capabilities.TryGetValue(name, out var capability))
            {
                problems.Add($"import 'outpost.{name}' is not an Outpost host function (known: {string.Join(", ", Capabilities.Keys)})");
            }
            else if (!granted.Contains(capability))
            {
                problems.Add($"import 'outpost.{name}' needs capability '{capability}', which spec.capabilities does not grant");
            }
        }

        return problems;
    }

    internal static void Define(Linker linker, TimeProvider time, Func<Caller, Wasi.WasiContext> contextOf, Func<Caller, Memory?> memoryOf)
    {
        HostGrant? grantOf(Caller c) => contextOf(c).Grant;
        linker.DefineFunction(ModuleName, "log", (Caller c, int level, int ptr, int len) =>
        {
            var (grant, memory) = Enter(c, "log", grantOf, memoryOf);
            grant.Services.Log(grant.App, grant.Revision, level, ReadString(memory, ptr, len));
        });
        linker.DefineFunction(ModuleName, "config_get", (Caller c, int keyPtr, int keyLen, int buf, int cap) =>
        {
            var (grant, memory) = Enter(c, "config_get", grantOf, memoryOf);
            var value = grant.Services.GetConfig(grant.App, ReadString(memory, keyPtr, keyLen));
            return value is null ? -1 : WriteResult(memory, Encoding.UTF8.GetBytes(value), buf, cap);
        });
        linker.DefineFunction(ModuleName, "secret_get", (Caller c, int keyPtr, int keyLen, int buf, int cap) =>
        {
            var (grant, memory) = Enter(c, "secret_get", grantOf, memoryOf);
            var value = grant.Services.GetSecret(grant.App, ReadString(memory, keyPtr, keyLen));
            return value is null ? -1 : WriteResult(memory, Encoding.UTF8.GetBytes(value), buf, cap);
        });
        linker.DefineFunction(ModuleName, "kv_get", (Caller c, int bucketPtr, int bucketLen, int keyPtr, int keyLen, int buf, int cap) =>
        {
            var (grant, memory) = Enter(c, "kv_get", grantOf, memoryOf);
            var value = grant.Services.KvGet(grant.App, ReadString(memory, bucketPtr, bucketLen), ReadString(memory, keyPtr, keyLen));
            return value is null ? -1 : WriteResult(memory, value, buf, cap);
        });
        linker.DefineFunction(ModuleName, "kv_set", (Caller c, int bucketPtr, int bucketLen, int keyPtr, int keyLen, int valuePtr, int valueLen) =>
        {
            var (grant, memory) = Enter(c, "kv_set", grantOf, memoryOf);
            return grant.Services.KvSet(grant.App, ReadString(memory, bucketPtr, bucketLen), ReadString(memory, keyPtr, keyLen), Span(memory, valuePtr, valueLen)) ? 0 : -1;
        });
        linker.DefineFunction(ModuleName, "kv_delete", (Caller c, int bucketPtr, int bucketLen, int keyPtr, int keyLen) =>
        {
            var (grant, memory) = Enter(c, "kv_delete", grantOf, memoryOf);
            return grant.Services.KvDelete(grant.App, ReadString(memory, bucketPtr, bucketLen), ReadString(memory, keyPtr, keyLen));
        });
        linker.DefineFunction(ModuleName, "publish", (Caller c, int topicPtr, int topicLen, int dataPtr, int dataLen) =>
        {
            var (grant, memory) = Enter(c, "publish", grantOf, memoryOf);
            return grant.Services.Publish(grant.App, ReadString(memory, topicPtr, topicLen), Span(memory, dataPtr, dataLen)) ? 0 : -1;
        });
        linker.DefineFunction(ModuleName, "now_ms", (Caller c) =>
        {
            Enter(c, "now_ms", grantOf, _ => null, needsMemory: false);
            return time.GetUtcNow().ToUnixTimeMilliseconds();
        });
        linker.DefineFunction(ModuleName, "http_request", (Caller c, int methodPtr, int methodLen, int urlPtr, int urlLen, int headersPtr, int headersLen, int bodyPtr, int bodyLen) =>
        {
            var (grant, memory) = Enter(c, "http_request", grantOf, memoryOf);
            var context = contextOf(c);
            context.LastHttpResponse = null;
            var method = ReadString(memory, methodPtr, methodLen);
            var url = ReadString(memory, urlPtr, urlLen);
            var request = HttpOut.Parse(method, url, ReadString(memory, headersPtr, headersLen), Span(memory, bodyPtr, bodyLen), grant.HttpOut, out var refusal);
            if (request is null)
            {
                grant.Services.Log(grant.App, grant.Revision, LogWarn, $"http-out {method} {url}: {refusal}");
                return -1;
            }

            var left = System.Diagnostics.Stopwatch.GetElapsedTime(System.Diagnostics.Stopwatch.GetTimestamp(), context.Deadline);
            if (left <= TimeSpan.Zero)
            {
                grant.Services.Log(grant.App, grant.Revision, LogWarn, $"http-out {method} {url}: the run's time is up");
                return -1;
            }

            try
            {
                var response = grant.Services.HttpRequest(grant.App, request with { MaxResponseBytes = context.Stdout.Capacity }, left);
                context.LastHttpResponse = response;
                return response.Status;
            }
            catch (HttpOutException ex)
            {
                grant.Services.Log(grant.App, grant.Revision, LogWarn, $"http-out {method} {url}: {ex.Message}");
                return -1;
            }
        });
        linker.DefineFunction(ModuleName, "http_response_body", (Caller c, int buf, int cap) =>
        {
            var (_, memory) = Enter(c, "http_response_body", grantOf, memoryOf);
            return contextOf(c).LastHttpResponse is { } response ? WriteResult(memory, response.Body, buf, cap) : -1;
        });
        linker.DefineFunction(ModuleName, "http_response_header", (Caller c, int namePtr, int nameLen, int buf, int cap) =>
        {
            var (_, memory) = Enter(c, "http_response_header", grantOf, memoryOf);
            var name = ReadString(memory, namePtr, nameLen);
            var value = contextOf(c).LastHttpResponse?.Headers.FirstOrDefault(h => string.Equals(h.Key, name, StringComparison.OrdinalIgnoreCase)).Value;
            return value is null ? -1 : WriteResult(memory, Encoding.UTF8.GetBytes(value), buf, cap);
        });
    }

    private const int LogWarn = 2;

    private static (HostGrant Grant, Memory Memory) Enter(Caller caller, string function, Func<Caller, HostGrant?> grantOf, Func<Caller, Memory?> memoryOf, bool needsMemory = true)
    {
        // Linking already refused ungranted imports; this check keeps a run without a grant honest.
        var grant = grantOf(caller);
        if (grant is null || !grant.Capabilities.Contains(Capabilities[function]))
        {
            throw new InvalidOperationException($"outpost.{function} called without capability '{Capabilities[function]}'");
        }

        var memory = needsMemory ? memoryOf(caller) ?? throw new InvalidOperationException("the module exports no memory") : null!;
        return (grant, memory);
    }

    private static ReadOnlySpan<byte> Span(Memory memory, int ptr, int len)
    {
        if (len < 0 || ptr < 0 || (long)ptr + len > memory.GetLength())
        {
            throw new InvalidOperationException($"out-of-bounds buffer ({ptr}, {len})");
        }

        return memory.GetSpan(ptr, len);
    }

    private static string ReadString(Memory memory, int ptr, int len)
    {
        if (len > MaxStringBytes)
        {
            throw new InvalidOperationException($"string argument of {len} bytes exceeds {MaxStringBytes}");
        }

        return Encoding.UTF8.GetString(Span(memory, ptr, len));
    }

    private static int WriteResult(Memory memory, byte[] value, int buf, int cap)
    {
        if (value.Length <= cap)
        {
            value.CopyTo(memory.GetSpan(buf, value.Length));
        }

        return value.Length;
    }
}
