using System.IO.Compression;

namespace Outpost.Core.Sync;

/// <summary>
/// Compression for record batches. Brotli at its fastest setting: cheap on small edge CPUs
/// and far smaller than the raw records on the wire. Decoding is bounded, so a hostile or
/// corrupt batch cannot expand without limit.
/// </summary>
public static class BatchCodec
{
    public const string Brotli = "br";
    public const string Identity = "identity";

    /// <summary>Largest batch accepted once decompressed, 16 MiB.</summary>
    public const int MaxDecodedBytes = 16 * 1024 * 1024;

    public static byte[] Compress(ReadOnlySpan<byte> data)
    {
        using var output = new MemoryStream(data.Length / 2 + 64);
        using (var brotli = new BrotliStream(output, CompressionLevel.Fastest, leaveOpen: true))
        {
            brotli.Write(data);
        }

        return output.ToArray();
    }

    /// <summary>Decodes a batch; throws <see cref="InvalidDataException"/> for an unknown codec, corrupt data or a batch over the limit.</summary>
    public static byte[] Decompress(string codec, ReadOnlySpan<byte> data)
    {
        switch (codec)
        {
            case Identity:
                return data.Length > MaxDecodedBytes ? throw new InvalidDataException($"batch larger than {MaxDecodedBytes} bytes") : data.ToArray();
            case Brotli:
                using (var input = new MemoryStream(data.ToArray()))
                using (var brotli = new BrotliStream(input, CompressionMode.Decompress))
                using (var output = new MemoryStream())
                {
                    var buffer = new byte[64 * 1024];
                    int n;
                    while ((n = brotli.Read(buffer)) > 0)
                    {
                        if (output.Length + n > MaxDecodedBytes)
                        {
                            throw new InvalidDataException($"batch expands beyond {MaxDecodedBytes} bytes");
                        }

                        output.Write(buffer, 0, n);
                    }

                    return output.ToArray();
                }

            default:
                throw new InvalidDataException($"unknown batch codec '{codec}'");
        }
    }
}
