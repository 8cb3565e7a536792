using System.Buffers;
using System.Buffers.Binary;
using System.Text;

namespace Outpost.Wasm.Wasi;

/// <summary>
/// A guest's arguments or environment as WASI hands them over: NUL-terminated UTF-8 strings
/// ("K=V\0" for the environment) packed in one buffer, with where each starts. A request's
/// environment is written straight into it, without a string or an array per variable; a
/// block made for one run rents its buffers and returns them when disposed.
/// </summary>
internal sealed class StringBlock : IDisposable
{
    private readonly bool _pooled;
    private byte[] _bytes;
    private int[] _starts;
    private bool _open;

    /// <summary>An empty block, its buffers rented from the shared pools (one run's).</summary>
    public StringBlock()
    {
        _pooled = true;
        _bytes = ArrayPool<byte>.Shared.Rent(1024);
        _starts = ArrayPool<int>.Shared.Rent(32);
    }

    /// <summary>A block kept for many runs (an app's fixed environment), its buffers its own.</summary>
    private StringBlock(int bytes, int count)
    {
        _bytes = new byte[Math.Max(bytes, 1)];
        _starts = new int[Math.Max(count, 1)];
    }

    /// <summary>How many strings it holds.</summary>
    public int Count { get; private set; }

    /// <summary>Their bytes, terminators included.</summary>
    public int Length { get; private set; }

    /// <summary>The strings, as a block kept for many runs.</summary>
    public static StringBlock Of(IEnumerable<string> values)
    {
        ArgumentNullException.ThrowIfNull(values);
        var list = values as IReadOnlyCollection<string> ?? [.. values];
        var block = new StringBlock(list.Sum(v => Encoding.UTF8.GetByteCount(v) + 1), list.Count);
        foreach (var value in list)
        {
            block.Append(value).End();
        }

        return block;
    }

    /// <summary>"K=V" for each pair, as a block kept for many runs.</summary>
    public static StringBlock OfPairs(IEnumerable<KeyValuePair<string, string>> pairs)
    {
        ArgumentNullException.ThrowIfNull(pairs);
        var list = pairs as IReadOnlyCollection<KeyValuePair<string, string>> ?? [.. pairs];
        var block = new StringBlock(list.Sum(p => Encoding.UTF8.GetByteCount(p.Key) + Encoding.UTF8.GetByteCount(p.Value) + 2), list.Count);
        foreach (var (key, value) in list)
        {
            block.Add(key, value);
        }

        return block;
    }

    /// <summary>Adds "K=V".</summary>
    public StringBlock Add(string key, string value) => Append(key).Append('=').Append(value).End();

    /// <summary>Adds every string of <paramref name="other"/>, in order.</summary>
    public StringBlock AddAll(StringBlock other)
    {
        ArgumentNullException.ThrowIfNull(other);
        if (_open)
        {
            throw new InvalidOperationException("a string is being written: End it before adding others");
        }

        Reserve(other.Length);
        other._bytes.AsSpan(0, other.Length).CopyTo(_bytes.AsSpan(Length));
        for (var i = 0; i < other.Count; i++)
        {
            AddStart(Length + other._starts[i]);
        }

        Length += other.Length;
        return this;
    }

    /// <summary>Appends to the string being written (the first append starts it).</summary>
    public StringBlock Append(ReadOnlySpan<char> text)
    {
        Begin();
        Reserve(Encoding.UTF8.GetMaxByteCount(text.Length));
        Length += Encoding.UTF8.GetBytes(text, _bytes.AsSpan(Length));
        return this;
    }

    /// <inheritdoc cref="Append(ReadOnlySpan{char})"/>
    public StringBlock Append(char c) => c < 0x80 ? AppendByte((byte)c) : Append(new ReadOnlySpan<char>(in c));

    /// <inheritdoc cref="Append(ReadOnlySpan{char})"/>
    public StringBlock Append<T>(T value)
        where T : IUtf8SpanFormattable
    {
        Begin();
        int written;
        while (!value.TryFormat(_bytes.AsSpan(Length), out written, default, System.Globalization.CultureInfo.InvariantCulture))
        {
            Reserve(_bytes.Length);
        }

        Length += written;
        return this;
    }

    /// <summary>Appends a header name as CGI spells it: upper case, '-' as '_'.</summary>
    public StringBlock AppendHeaderName(ReadOnlySpan<char> name)
    {
        Begin();
        Reserve(Encoding.UTF8.GetMaxByteCount(name.Length));
        var start = Length;
        Length += Encoding.UTF8.GetBytes(name, _bytes.AsSpan(Length));
        foreach (ref var b in _bytes.AsSpan(start, Length - start))
        {
            b = b == (byte)'-' ? (byte)'_' : b is >= (byte)'a' and <= (byte)'z' ? (byte)(b - 32) : b;
        }

        return this;
    }

    /// <summary>Ends the string being written with its NUL.</summary>
    public StringBlock End()
    {
        Begin();
        AppendByte(0);
        _open = false;
        return this;
    }

    /// <summary>The i-th string, without its NUL.</summary>
    public ReadOnlySpan<byte> this[int index]
    {
        get
        {
            ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)index, (uint)Count, nameof(index));
            var end = index + 1 < Count ? _starts[index + 1] : Length;
            return _bytes.AsSpan(_starts[index], end - _starts[index] - 1);
        }
    }

    /// <summary>
    /// Writes the strings for args_get/environ_get: their bytes into <paramref name="bytes"/>,
    /// which the guest has at <paramref name="address"/>, and a little-endian pointer to each into
    /// <paramref name="pointers"/>.
    /// </summary>
    public void CopyTo(Span<byte> pointers, Span<byte> bytes, int address)
    {
        _bytes.AsSpan(0, Length).CopyTo(bytes);
        for (var i = 0; i < Count; i++)
        {
            BinaryPrimitives.WriteInt32LittleEndian(pointers[(i * 4)..], address + _starts[i]);
        }
    }

    public void Dispose()
    {
        if (_pooled && _bytes.Length > 0)
        {
            ArrayPool<byte>.Shared.Return(_bytes);
            ArrayPool<int>.Shared.Return(_starts);
            _bytes = [];
            _starts = [];
        }
    }

    private void Begin()
    {
        if (!_open)
        {
            _open = true;
            AddStart(Length);
        }
    }

    private StringBlock AppendByte(byte b)
    {
        Begin();
        Reserve(1);
        _bytes[Length++] = b;
        return this;
    }

    private void AddStart(int start)
    {
        if (Count == _starts.Length)
        {
            _starts = Grow(_starts, _starts.Length * 2);
        }

        _starts[Count++] = start;
    }

    private void Reserve(int bytes)
    {
        if (Length + bytes > _bytes.Length)
        {
            _bytes = Grow(_bytes, Math.Max(_bytes.Length * 2, Length + bytes));
        }
    }

    private T[] Grow<T>(T[] current, int size)
    {
        var grown = _pooled ? ArrayPool<T>.Shared.Rent(size) : new T[size];
        current.AsSpan().CopyTo(grown);
        if (_pooled)
        {
            ArrayPool<T>.Shared.Return(current);
        }

        return grown;
    }
}
