using System.IO.Compression;
using Outpost.Core.Sync;

namespace Outpost.Core.Tests.Sync;

public sealed class BatchCodecTests
{
    [Theory]
    [InlineData(0)]
    [InlineData(200)]
    [InlineData(70_000)]
    [InlineData(3_000_000)]
    public void Brotli_RoundTrips_SmallAndLargeBatches(int size)
    {
        // Text-like bytes that compress well, so a large batch grows the output buffer several times.
        var data = new byte[size];
        var random = new Random(size);
        for (var i = 0; i < data.Length; i++)
        {
            data[i] = (byte)('a' + random.Next(4));
        }

        var compressed = BatchCodec.Compress(data);

        Assert.Equal(data, BatchCodec.Decompress(BatchCodec.Brotli, compressed));
    }

    [Fact]
    public void Identity_ReturnsTheBytes()
    {
        byte[] data = [1, 2, 3];

        Assert.Equal(data, BatchCodec.Decompress(BatchCodec.Identity, data));
    }

    [Fact]
    public void Brotli_RefusesABatchThatExpandsPastTheLimit()
    {
        // A few KB that decode to 17 MiB of zeros: a bomb, refused once the output passes 16 MiB.
        var bomb = BatchCodec.Compress(new byte[BatchCodec.MaxDecodedBytes + (1 << 20)]);
        Assert.True(bomb.Length < 64 * 1024);

        var error = Assert.Throws<InvalidDataException>(() => BatchCodec.Decompress(BatchCodec.Brotli, bomb));
        Assert.Contains("expands beyond", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Brotli_DecodesABatchOfExactlyTheLimit()
    {
        var data = new byte[BatchCodec.MaxDecodedBytes];

        Assert.Equal(data.Length, BatchCodec.Decompress(BatchCodec.Brotli, BatchCodec.Compress(data)).Length);
    }

    [Fact]
    public void Brotli_RefusesATruncatedBatch()
    {
        var data = new byte[50_000];
        new Random(7).NextBytes(data);
        var compressed = BatchCodec.Compress(data);

        var error = Assert.Throws<InvalidDataException>(() => BatchCodec.Decompress(BatchCodec.Brotli, compressed.AsSpan(0, compressed.Length / 2)));
        Assert.Contains("truncated", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Brotli_RefusesBytesThatAreNotBrotli()
    {
        // Brotli's own stream sees the same bytes as corrupt.
        byte[] garbage = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        Assert.ThrowsAny<Exception>(() =>
        {
            using var stream = new BrotliStream(new MemoryStream(garbage), CompressionMode.Decompress);
            stream.ReadExactly(new byte[1]);
        });

        var error = Assert.Throws<InvalidDataException>(() => BatchCodec.Decompress(BatchCodec.Brotli, garbage));
        Assert.Contains("not valid Brotli", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void UnknownCodec_IsNamed()
    {
        var error = Assert.Throws<InvalidDataException>(() => BatchCodec.Decompress("zstd", [1]));
        Assert.Contains("'zstd'", error.Message, StringComparison.Ordinal);
    }
}
