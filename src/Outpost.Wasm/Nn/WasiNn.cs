using System.Buffers.Binary;
using System.Diagnostics;
using System.Runtime.InteropServices;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using Outpost.Core.Resources;
using Outpost.Wasm.Wasi;
using Wasmtime;

namespace Outpost.Wasm.Nn;

/// <summary>
/// WASI-NN, the witx ABI (import module <c>wasi_ephemeral_nn</c>) that guests built against the
/// wasi-nn bindings for Wasmtime import, on ONNX Runtime. Graphs come from the app's declared
/// models by name (<c>load_by_name</c>) or from ONNX bytes the guest passes (<c>load</c>); both
/// share the node's one session per model digest. Tensors are f16, f32, f64, u8, i32 or i64 in
/// and out, checked against the model's inputs; every guest pointer is checked. Inference runs
/// within the app's time limit. Errors are the witx nn_errno values.
/// </summary>
internal static class WasiNn
{
    public const string ModuleName = "wasi_ephemeral_nn";

    /// <summary>The capability that grants these imports.</summary>
    public const string Capability = "nn";

    public static IReadOnlySet<string> Functions { get; } = new HashSet<string>(StringComparer.Ordinal)
    {
        "load", "load_by_name", "init_execution_context", "set_input", "compute", "get_output",
    };

    // nn_errno
    private const int Success = 0;
    private const int InvalidArgument = 1;
    private const int InvalidEncoding = 2;
    private const int RuntimeError = 5;
    private const int UnsupportedOperation = 6;
    private const int TooLarge = 7;
    private const int NotFound = 8;

    private const int EncodingOnnx = 1;
    private const int EncodingAutodetect = 5;
    private const int TargetCpu = 0;

    /// <summary>The most graphs and execution contexts one run may hold.</summary>
    private const int MaxHandles = 64;

    public static void Define(Linker linker, Func<Caller, WasiContext> contextOf, Func<Caller, Memory?> memoryOf, NnSessions? sessions)
    {
        linker.DefineFunction(ModuleName, "load", (Caller c, int builders, int count, int encoding, int target, int graphOut) =>
            Load(contextOf(c), memoryOf(c), sessions, builders, count, encoding, target, graphOut));
        linker.DefineFunction(ModuleName, "load_by_name", (Caller c, int name, int length, int graphOut) =>
            LoadByName(contextOf(c), memoryOf(c), sessions, name, length, graphOut));
        linker.DefineFunction(ModuleName, "init_execution_context", (Caller c, int graph, int contextOut) =>
        {
            var state = State(contextOf(c));
            if (graph < 0 || graph >= state.Graphs.Count)
            {
                return Fail(contextOf(c), InvalidArgument, $"init_execution_context: no graph {graph}");
            }

            if (state.Executions.Count >= MaxHandles)
            {
                return Fail(contextOf(c), RuntimeError, $"init_execution_context: at most {MaxHandles} execution contexts per run");
            }

            if (!Out(memoryOf(c), contextOut))
            {
                return Fail(contextOf(c), InvalidArgument, "init_execution_context: the context pointer is outside the guest's memory");
            }

            state.Executions.Add(new NnExecution(state.Graphs[graph]));
            WriteOut(memoryOf(c), contextOut, (uint)(state.Executions.Count - 1));
            return Success;
        });
        linker.DefineFunction(ModuleName, "set_input", (Caller c, int execution, int index, int tensor) =>
            SetInput(contextOf(c), memoryOf(c), execution, index, tensor));
        linker.DefineFunction(ModuleName, "compute", (Caller c, int execution) => Compute(contextOf(c), execution));
        linker.DefineFunction(ModuleName, "get_output", (Caller c, int execution, int index, int buffer, int max, int writtenOut) =>
            GetOutput(contextOf(c), memoryOf(c), execution, index, buffer, max, writtenOut));
    }

    private static NnState State(WasiContext context) => context.Nn ??= new NnState();

    private static int Load(WasiContext context, Memory? memory, NnSessions? sessions, int builders, int count, int encoding, int target, int graphOut)
    {
        if (encoding is not (EncodingOnnx or EncodingAutodetect))
        {
            return Fail(context, InvalidEncoding, $"load: encoding {encoding} is not ONNX (1): this node runs ONNX models");
        }

        if (target != TargetCpu)
        {
            return Fail(context, UnsupportedOperation, $"load: execution target {target} is not the CPU (0), the only one this node has");
        }

        if (count != 1)
        {
            return Fail(context, InvalidArgument, $"load: an ONNX graph is one builder, got {count}");
        }

        if (WasiFiles.Guest(memory, builders, 8, out var builder) is not null)
        {
            return Fail(context, InvalidArgument, "load: the builder array is outside the guest's memory");
        }

        var ptr = BinaryPrimitives.ReadInt32LittleEndian(builder);
        var length = BinaryPrimitives.ReadInt32LittleEndian(builder[4..]);
        if (WasiFiles.Guest(memory, ptr, length, out var bytes) is not null || !Out(memory, graphOut))
        {
            return Fail(context, InvalidArgument, "load: the model bytes or the graph pointer are outside the guest's memory");
        }

        var model = bytes.ToArray();
        return AddGraph(context, memory, sessions, Digest.Compute(model), () => model, graphOut, "the model passed to load");
    }

    private static int LoadByName(WasiContext context, Memory? memory, NnSessions? sessions, int namePtr, int nameLength, int graphOut)
    {
        if (WasiFiles.Guest(memory, namePtr, nameLength, out var nameBytes) is not null || !Out(memory, graphOut))
        {
            return Fail(context, InvalidArgument, "load_by_name: the name or the graph pointer is outside the guest's memory");
        }

        var name = System.Text.Encoding.UTF8.GetString(nameBytes);
        if (context.Models?.TryGetValue(name, out var model) != true)
        {
            var known = context.Models is { Count: > 0 } models ? string.Join(", ", models.Keys.Order(StringComparer.Ordinal)) : "none";
            return Fail(context, NotFound, $"load_by_name: the app declares no model '{name}' (spec.models: {known})");
        }

        return AddGraph(context, memory, sessions, model!.Digest, model.Read, graphOut, $"model '{name}'");
    }

    private static int AddGraph(WasiContext context, Memory? memory, NnSessions? sessions, string digest, Func<byte[]> read, int graphOut, string what)
    {
        if (sessions is null)
        {
            return Fail(context, UnsupportedOperation, "this node has no ONNX Runtime");
        }

        var state = State(context);
        if (state.Graphs.Count >= MaxHandles)
        {
            return Fail(context, RuntimeError, $"at most {MaxHandles} graphs per run");
        }

        NnSession session;
        try
        {
            session = sessions.Acquire(digest, read);
        }
        catch (OnnxRuntimeException e)
        {
            return Fail(context, InvalidEncoding, $"{what} is not a model ONNX Runtime can load: {FirstLine(e.Message)}");
        }
        catch (OnnxRuntimeUnavailableException e)
        {
            return Fail(context, UnsupportedOperation, $"this node's ONNX Runtime cannot be used: {e.Message}");
        }

        state.Graphs.Add(session);
        state.Sessions = sessions;
        WriteOut(memory, graphOut, (uint)(state.Graphs.Count - 1));
        return Success;
    }

    private static int SetInput(WasiContext context, Memory? memory, int execution, int index, int tensorPtr)
    {
        if (Execution(context, execution) is not { } run)
        {
            return Fail(context, InvalidArgument, $"set_input: no execution context {execution}");
        }

        if (index < 0 || index >= run.Session.Inputs.Length)
        {
            return Fail(context, InvalidArgument, $"set_input: the model has {run.Session.Inputs.Length} input(s), not an input {index}");
        }

        if (WasiFiles.Guest(memory, tensorPtr, 20, out var tensor) is not null)
        {
            return Fail(context, InvalidArgument, "set_input: the tensor is outside the guest's memory");
        }

        var dimsPtr = BinaryPrimitives.ReadInt32LittleEndian(tensor);
        var dimsCount = BinaryPrimitives.ReadInt32LittleEndian(tensor[4..]);
        var type = tensor[8];
        var dataPtr = BinaryPrimitives.ReadInt32LittleEndian(tensor[12..]);
        var dataLength = BinaryPrimitives.ReadInt32LittleEndian(tensor[16..]);
        if (dimsCount is < 0 or > 16 || WasiFiles.Guest(memory, dimsPtr, dimsCount * 4, out var dimsBytes) is not null
            || WasiFiles.Guest(memory, dataPtr, dataLength, out var data) is not null)
        {
            return Fail(context, InvalidArgument, "set_input: the tensor's dimensions or data are outside the guest's memory");
        }

        var input = run.Session.Inputs[index];
        if (ElementType(type) is not { } elementType)
        {
            return Fail(context, InvalidArgument, $"set_input: tensor type {type} is not one of f16 (0), f32 (1), f64 (2), u8 (3), i32 (4), i64 (5)");
        }

        if (elementType != input.Type)
        {
            return Fail(context, InvalidArgument, $"set_input: input '{input.Name}' takes {Name(input.Type)}, the tensor is {Name(elementType)}");
        }

        var shape = new long[dimsCount];
        long elements = 1;
        for (var i = 0; i < dimsCount; i++)
        {
            shape[i] = BinaryPrimitives.ReadUInt32LittleEndian(dimsBytes[(i * 4)..]);
            elements *= shape[i];
        }

        if (shape.Length != input.Dimensions.Length || shape.Where((d, i) => input.Dimensions[i] >= 0 && input.Dimensions[i] != d).Any())
        {
            return Fail(context, InvalidArgument, $"set_input: input '{input.Name}' has shape [{Shape(input.Dimensions)}], the tensor [{string.Join(", ", shape)}]");
        }

        if (elements * ElementSize(elementType) != dataLength)
        {
            return Fail(context, InvalidArgument, $"set_input: a [{string.Join(", ", shape)}] {Name(elementType)} tensor is {elements * ElementSize(elementType)} bytes, the data {dataLength}");
        }

        // Copied out of the guest's memory, which may move if it grows before compute.
        run.Inputs[index] = (data.ToArray(), shape);
        run.Outputs = null;
        return Success;
    }

    private static int Compute(WasiContext context, int execution)
    {
        if (Execution(context, execution) is not { } run)
        {
            return Fail(context, InvalidArgument, $"compute: no execution context {execution}");
        }

        var session = run.Session;
        if (Array.FindIndex(run.Inputs, i => i is null) is var missing && missing >= 0)
        {
            return Fail(context, InvalidArgument, $"compute: input {missing} ('{session.Inputs[missing].Name}') was not set");
        }

        var left = context.Deadline - Stopwatch.GetTimestamp();
        if (left <= 0)
        {
            context.TimedOut = true;
            throw new GuestTimeoutException();
        }

        var pins = new GCHandle[run.Inputs.Length];
        var values = new OrtValue[run.Inputs.Length];
        using var options = new RunOptions();
        // The app's time limit holds for inference too: ONNX Runtime stops between nodes when told to.
        using var deadline = new Timer(_ => options.Terminate = true, null, TimeSpan.FromTicks(Math.Max(1, left * TimeSpan.TicksPerSecond / Stopwatch.Frequency)), Timeout.InfiniteTimeSpan);
        try
        {
            for (var i = 0; i < values.Length; i++)
            {
                var (bytes, shape) = run.Inputs[i]!.Value;
                pins[i] = GCHandle.Alloc(bytes, GCHandleType.Pinned);
                values[i] = OrtValue.CreateTensorValueWithData(OrtMemoryInfo.DefaultInstance, session.Inputs[i].Type, shape, pins[i].AddrOfPinnedObject(), bytes.Length);
            }

            using var results = session.Session.Run(options, [.. session.Inputs.Select(i => i.Name)], values, [.. session.Outputs.Select(o => o.Name)]);
            var outputs = new byte[results.Count][];
            for (var i = 0; i < results.Count; i++)
            {
                var value = results[i];
                if (!value.IsTensor || ElementSize(value.GetTensorTypeAndShape().ElementDataType) == 0)
                {
                    return Fail(context, UnsupportedOperation, $"compute: output '{session.Outputs[i].Name}' is not a tensor of a WASI-NN type");
                }

                outputs[i] = value.GetTensorMutableRawData().ToArray();
            }

            run.Outputs = outputs;
            return Success;
        }
        catch (OnnxRuntimeException) when (options.Terminate)
        {
            context.TimedOut = true;
            throw new GuestTimeoutException("inference ran past the app's time limit");
        }
        catch (OnnxRuntimeException e)
        {
            return Fail(context, RuntimeError, $"compute: ONNX Runtime failed: {FirstLine(e.Message)}");
        }
        finally
        {
            foreach (var value in values)
            {
                value?.Dispose();
            }

            foreach (var pin in pins.Where(p => p.IsAllocated))
            {
                pin.Free();
            }
        }
    }

    private static int GetOutput(WasiContext context, Memory? memory, int execution, int index, int buffer, int max, int writtenOut)
    {
        if (Execution(context, execution) is not { } run)
        {
            return Fail(context, InvalidArgument, $"get_output: no execution context {execution}");
        }

        if (run.Outputs is not { } outputs)
        {
            return Fail(context, InvalidArgument, "get_output: compute has not run since the inputs were set");
        }

        if (index < 0 || index >= outputs.Length)
        {
            return Fail(context, InvalidArgument, $"get_output: the model has {outputs.Length} output(s), not an output {index}");
        }

        if (WasiFiles.Guest(memory, buffer, max, out var target) is not null || !Out(memory, writtenOut))
        {
            return Fail(context, InvalidArgument, "get_output: the buffer or the length pointer is outside the guest's memory");
        }

        var bytes = outputs[index];
        if (bytes.Length > max)
        {
            return Fail(context, TooLarge, $"get_output: output {index} is {bytes.Length} bytes, the buffer {max}");
        }

        bytes.CopyTo(target);
        WriteOut(memory, writtenOut, (uint)bytes.Length);
        return Success;
    }

    private static NnExecution? Execution(WasiContext context, int execution) =>
        context.Nn is { } state && execution >= 0 && execution < state.Executions.Count ? state.Executions[execution] : null;

    /// <summary>True when a 4-byte out-parameter at <paramref name="ptr"/> is inside guest memory.</summary>
    private static bool Out(Memory? memory, int ptr) => WasiFiles.Guest(memory, ptr, 4, out _) is null;

    /// <summary>Writes a u32 result to an out-parameter <see cref="Out"/> checked.</summary>
    private static void WriteOut(Memory? memory, int ptr, uint value)
    {
        WasiFiles.Guest(memory, ptr, 4, out var span);
        BinaryPrimitives.WriteUInt32LittleEndian(span, value);
    }

    /// <summary>Fails the call with <paramref name="errno"/>, noting why for the app's log.</summary>
    private static int Fail(WasiContext context, int errno, string reason)
    {
        context.Note($"wasi-nn {reason}");
        return errno;
    }

    private static TensorElementType? ElementType(byte type) => type switch
    {
        0 => TensorElementType.Float16,
        1 => TensorElementType.Float,
        2 => TensorElementType.Double,
        3 => TensorElementType.UInt8,
        4 => TensorElementType.Int32,
        5 => TensorElementType.Int64,
        _ => null,
    };

    private static int ElementSize(TensorElementType type) => type switch
    {
        TensorElementType.Float16 => 2,
        TensorElementType.Float => 4,
        TensorElementType.Double => 8,
        TensorElementType.UInt8 => 1,
        TensorElementType.Int32 => 4,
        TensorElementType.Int64 => 8,
        _ => 0,
    };

    private static string Name(TensorElementType type) => type switch
    {
        TensorElementType.Float16 => "f16",
        TensorElementType.Float => "f32",
        TensorElementType.Double => "f64",
        TensorElementType.UInt8 => "u8",
        TensorElementType.Int32 => "i32",
        TensorElementType.Int64 => "i64",
        _ => type.ToString(),
    };

    private static string Shape(int[] dimensions) => string.Join(", ", dimensions.Select(d => d < 0 ? "?" : d.ToString(System.Globalization.CultureInfo.InvariantCulture)));

    private static string FirstLine(string message) => message.Split('\n', 2)[0];
}

/// <summary>A model an app declares (spec.models), as load_by_name finds it: its digest, and how to read its bytes the first time.</summary>
public sealed record NnModel(string Digest, Func<byte[]> Read);

/// <summary>One run's WASI-NN handles; the sessions it holds are released when the run ends.</summary>
internal sealed class NnState : IDisposable
{
    public List<NnSession> Graphs { get; } = [];

    public List<NnExecution> Executions { get; } = [];

    public NnSessions? Sessions { get; set; }

    public void Dispose()
    {
        foreach (var graph in Graphs)
        {
            Sessions?.Release(graph);
        }

        Graphs.Clear();
    }
}

/// <summary>An execution context: the inputs set so far, and the outputs of the last compute.</summary>
internal sealed class NnExecution(NnSession session)
{
    public NnSession Session { get; } = session;

    public (byte[] Data, long[] Shape)?[] Inputs { get; } = new (byte[], long[])?[session.Inputs.Length];

    public byte[][]? Outputs { get; set; }
}
