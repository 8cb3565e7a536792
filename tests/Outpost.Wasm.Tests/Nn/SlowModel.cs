using System.Buffers.Binary;
using System.Text;

namespace Outpost.Wasm.Tests.Nn;

/// <summary>
/// An ONNX model that takes long to run, written here as protobuf by hand: input "input" f32
/// [1, 1024] through <c>layers</c> MatMuls with one 1024×1024 weight, to output "probs" f32 [1, 1024]
/// (a megabyte-sized multiply per layer, a few milliseconds each on one thread).
/// </summary>
internal static class SlowModel
{
    public static byte[] Build(int layers)
    {
        var weights = new byte[1024 * 1024 * 4];
        for (var i = 0; i < 1024; i++)
        {
            BinaryPrimitives.WriteSingleLittleEndian(weights.AsSpan(((i * 1024) + i) * 4), 1f); // identity: the values stay put
        }

        var graph = new List<byte>();
        for (var i = 0; i < layers; i++)
        {
            var node = new List<byte>();
            String(node, 1, i == 0 ? "input" : $"x{i}");
            String(node, 1, "w");
            String(node, 2, i == layers - 1 ? "probs" : $"x{i + 1}");
            String(node, 4, "MatMul");
            Message(graph, 1, node);
        }

        String(graph, 2, "slow");
        var tensor = new List<byte>();
        Varint(tensor, 1, 1024);
        Varint(tensor, 1, 1024);
        Varint(tensor, 2, 1); // FLOAT
        String(tensor, 8, "w");
        Bytes(tensor, 9, weights);
        Message(graph, 5, tensor);
        Message(graph, 11, ValueInfo("input"));
        Message(graph, 12, ValueInfo("probs"));

        var opset = new List<byte>();
        Varint(opset, 2, 13);
        var model = new List<byte>();
        Varint(model, 1, 8); // ir_version
        Message(model, 8, opset);
        Message(model, 7, graph);
        return [.. model];
    }

    private static List<byte> ValueInfo(string name)
    {
        var shape = new List<byte>();
        foreach (var dim in new long[] { 1, 1024 })
        {
            var d = new List<byte>();
            Varint(d, 1, (ulong)dim);
            Message(shape, 1, d);
        }

        var tensorType = new List<byte>();
        Varint(tensorType, 1, 1); // FLOAT
        Message(tensorType, 2, shape);
        var type = new List<byte>();
        Message(type, 1, tensorType);
        var info = new List<byte>();
        String(info, 1, name);
        Message(info, 2, type);
        return info;
    }

    private static void Varint(List<byte> to, int field, ulong value)
    {
        Raw(to, (ulong)field << 3);
        Raw(to, value);
    }

    private static void String(List<byte> to, int field, string value) => Bytes(to, field, Encoding.UTF8.GetBytes(value));

    private static void Message(List<byte> to, int field, List<byte> message) => Bytes(to, field, [.. message]);

    private static void Bytes(List<byte> to, int field, byte[] value)
    {
        Raw(to, ((ulong)field << 3) | 2);
        Raw(to, (ulong)value.Length);
        to.AddRange(value);
    }

    private static void Raw(List<byte> to, ulong value)
    {
        while (value >= 0x80)
        {
            to.Add((byte)(value | 0x80));
            value >>= 7;
        }

        to.Add((byte)value);
    }
}
