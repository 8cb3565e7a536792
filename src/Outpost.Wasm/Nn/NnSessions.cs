using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace Outpost.Wasm.Nn;

/// <summary>
/// One ONNX Runtime session per model digest on the node, shared by every request of every
/// app that uses the model (creating one takes milliseconds to seconds; a session runs
/// concurrent inferences safely). At most <see cref="Capacity"/> are kept: when a new model
/// needs room, the least recently used session no request holds is closed.
/// </summary>
public sealed class NnSessions : IDisposable
{
    private readonly Lock _lock = new();
    private readonly Dictionary<string, NnSession> _sessions = new(StringComparer.Ordinal);
    private long _clock;
    private long _created;

    private readonly string? _library;

    /// <summary>Sessions on the ONNX Runtime at <paramref name="library"/> (default: found as <see cref="OnnxRuntimeLibrary.Locate"/> finds it), loaded on the first model.</summary>
    public NnSessions(string? library = null, int capacity = 8)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        Capacity = capacity;
        _library = library;
    }

    public int Capacity { get; }

    /// <summary>Sessions created so far (a model loaded again after eviction counts again).</summary>
    public long Created => Interlocked.Read(ref _created);

    public int Count
    {
        get
        {
            lock (_lock)
            {
                return _sessions.Count;
            }
        }
    }

    /// <summary>
    /// The session for <paramref name="digest"/>, created from <paramref name="read"/> the first
    /// time; the caller releases it when done. Throws <see cref="OnnxRuntimeException"/> for a
    /// model ONNX Runtime cannot load.
    /// </summary>
    internal NnSession Acquire(string digest, Func<byte[]> read)
    {
        lock (_lock)
        {
            if (_sessions.TryGetValue(digest, out var existing))
            {
                existing.Users++;
                existing.LastUsed = ++_clock;
                return existing;
            }
        }

        if (OnnxRuntimeLibrary.Load(_library) is { Available: false } status)
        {
            throw new OnnxRuntimeUnavailableException(status.Problem ?? "ONNX Runtime is not available");
        }

        // Created outside the lock: a slow model does not hold up requests for loaded ones.
        var created = Create(digest, read());
        lock (_lock)
        {
            if (_sessions.TryGetValue(digest, out var raced))
            {
                created.Session.Dispose();
                raced.Users++;
                raced.LastUsed = ++_clock;
                return raced;
            }

            while (_sessions.Count >= Capacity && _sessions.Values.Where(s => s.Users == 0).MinBy(s => s.LastUsed) is { } idle)
            {
                _sessions.Remove(idle.Digest);
                idle.Session.Dispose();
            }

            created.Users = 1;
            created.LastUsed = ++_clock;
            _sessions[digest] = created;
            Interlocked.Increment(ref _created);
            return created;
        }
    }

    internal void Release(NnSession session)
    {
        lock (_lock)
        {
            session.Users--;
            if (session.Users == 0 && !_sessions.ContainsKey(session.Digest))
            {
                session.Session.Dispose();
            }
        }
    }

    private static NnSession Create(string digest, byte[] model)
    {
        using var options = new SessionOptions
        {
            // One thread per inference: a node serves many requests at once, and a session's own
            // thread pool would fight them (and the gateway) for the cores.
            IntraOpNumThreads = 1,
            InterOpNumThreads = 1,
            GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL,
            ExecutionMode = ExecutionMode.ORT_SEQUENTIAL,
        };
        var session = new InferenceSession(model, options);
        try
        {
            return new NnSession(digest, session);
        }
        catch
        {
            session.Dispose();
            throw;
        }
    }

    public void Dispose()
    {
        lock (_lock)
        {
            foreach (var session in _sessions.Values)
            {
                session.Session.Dispose();
            }

            _sessions.Clear();
        }
    }
}

/// <summary>A loaded model: its session, and its inputs and outputs as WASI-NN indexes them.</summary>
internal sealed class NnSession
{
    public NnSession(string digest, InferenceSession session)
    {
        Digest = digest;
        Session = session;
        Inputs = [.. session.InputNames.Select(n => new NnTensorInfo(n, session.InputMetadata[n]))];
        Outputs = [.. session.OutputNames.Select(n => new NnTensorInfo(n, session.OutputMetadata[n]))];
    }

    public string Digest { get; }

    public InferenceSession Session { get; }

    public NnTensorInfo[] Inputs { get; }

    public NnTensorInfo[] Outputs { get; }

    public int Users { get; set; }

    public long LastUsed { get; set; }
}

/// <summary>A model input or output: its name, element type and shape (-1 for a dimension the model leaves open).</summary>
internal sealed record NnTensorInfo(string Name, TensorElementType Type, int[] Dimensions)
{
    public NnTensorInfo(string name, NodeMetadata metadata)
        : this(name, metadata.IsTensor ? metadata.ElementDataType : TensorElementType.DataTypeMax, metadata.IsTensor ? metadata.Dimensions : [])
    {
    }
}

/// <summary>ONNX Runtime could not be loaded on this node; the message says why.</summary>
public sealed class OnnxRuntimeUnavailableException : Exception
{
    public OnnxRuntimeUnavailableException()
    {
    }

    public OnnxRuntimeUnavailableException(string message)
        : base(message)
    {
    }

    public OnnxRuntimeUnavailableException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}
