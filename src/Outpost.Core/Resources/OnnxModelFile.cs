namespace Outpost.Core.Resources;

/// <summary>
/// A structural check of an ONNX file (a ModelProto in protobuf), made where ONNX Runtime is not
/// needed (the CLI before upload, the server when a model is pushed): every field of the file
/// and of its graph is well formed and inside the file (a truncated file is not), the IR
/// version is set, and the graph has nodes and outputs.
/// </summary>
public static class OnnxModelFile
{
    private const int IrVersion = 1;
    private const int Graph = 7;
    private const int GraphNode = 1;
    private const int GraphOutput = 12;

    /// <summary>What is wrong with the bytes as an ONNX model, or null when they look like one.</summary>
    public static string? Problem(ReadOnlySpan<byte> model)
    {
        if (model.Length == 0)
        {
            return "the file is empty";
        }

        var fields = Fields(model, out var error);
        if (error is not null)
        {
            return $"not an ONNX model: {error}";
        }

        if (!fields.Any(f => f.Number == IrVersion && f.WireType == 0))
        {
            return "not an ONNX model: no ir_version";
        }

        if (fields.FirstOrDefault(f => f.Number == Graph && f.WireType == 2) is not { Length: > 0 } graph)
        {
            return "not an ONNX model: no graph";
        }

        var graphFields = Fields(model.Slice(graph.Offset, graph.Length), out error);
        if (error is not null)
        {
            return $"the model's graph is damaged: {error}";
        }

        return !graphFields.Any(f => f.Number == GraphNode) ? "the model's graph has no nodes"
            : !graphFields.Any(f => f.Number == GraphOutput) ? "the model's graph has no outputs"
            : null;
    }

    private readonly record struct Field(int Number, int WireType, int Offset, int Length);

    /// <summary>The message's top-level fields; <paramref name="error"/> says where the wire format breaks.</summary>
    private static List<Field> Fields(ReadOnlySpan<byte> message, out string? error)
    {
        var fields = new List<Field>();
        error = null;
        var at = 0;
        while (at < message.Length)
        {
            if (!Varint(message, ref at, out var key) || key == 0)
            {
                error = $"a field key at byte {at} is cut short or zero (is the file truncated?)";
                return fields;
            }

            var number = (int)(key >> 3);
            var wireType = (int)(key & 7);
            var start = at;
            switch (wireType)
            {
                case 0:
                    if (!Varint(message, ref at, out _))
                    {
                        error = $"field {number} at byte {start} is cut short (is the file truncated?)";
                        return fields;
                    }

                    break;
                case 1 or 5:
                    at += wireType == 1 ? 8 : 4;
                    break;
                case 2:
                    if (!Varint(message, ref at, out var length) || length > (ulong)(message.Length - at))
                    {
                        error = $"field {number} at byte {start} runs past the end of the file (is it truncated?)";
                        return fields;
                    }

                    start = at;
                    at += (int)length;
                    break;
                default:
                    error = $"field {number} at byte {start} has wire type {wireType}, which protobuf does not have";
                    return fields;
            }

            if (at > message.Length)
            {
                error = $"field {number} at byte {start} runs past the end of the file (is it truncated?)";
                return fields;
            }

            fields.Add(new Field(number, wireType, start, at - start));
        }

        return fields;
    }

    private static bool Varint(ReadOnlySpan<byte> data, ref int at, out ulong value)
    {
        value = 0;
        for (var shift = 0; shift < 64 && at < data.Length; shift += 7)
        {
            var b = data[at++];
            value |= (ulong)(b & 0x7F) << shift;
            if ((b & 0x80) == 0)
            {
                return true;
            }
        }

        return false;
    }
}
