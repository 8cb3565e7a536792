using Google.Protobuf;
using Grpc.Core;

namespace Outpost.Protocol;

/// <summary>
/// One vWire as a <see cref="Stream"/>: bytes read are the data of the peer's WireFrames, bytes
/// written go out as WireFrames of at most 64 KiB. The same class serves both ends (the server's
/// call handler and the node's client call). <see cref="ShutdownWriteAsync"/> half-closes (an eof
/// frame, as TCP's FIN); a frame with an error makes the next read throw, naming it. Disposing
/// it ends the wire: <see cref="Completion"/> completes, which is what the server's handler waits
/// for before the call ends.
/// </summary>
public sealed class WireStream : Stream
{
    /// <summary>The request header that names the wire a node's Wire call carries.</summary>
    public const string IdHeader = "outpost-wire";

    private const int MaxFrame = 64 * 1024;

    private readonly IAsyncStreamReader<WireFrame> _reader;
    private readonly IAsyncStreamWriter<WireFrame> _writer;
    private readonly Func<Task>? _completeWrites;
    private readonly SemaphoreSlim _writeLock = new(1, 1);
    private readonly TaskCompletionSource _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private ReadOnlyMemory<byte> _pending;
    private bool _readEof;
    private bool _writeEof;
    private long _bytesRead;
    private long _bytesWritten;

    /// <param name="reader">The peer's frames.</param>
    /// <param name="writer">Where this side's frames go.</param>
    /// <param name="completeWrites">For a client call, its request stream's CompleteAsync, called after the eof frame.</param>
    /// <param name="owner">What ends with the stream (a client call): disposed with it.</param>
    public WireStream(IAsyncStreamReader<WireFrame> reader, IAsyncStreamWriter<WireFrame> writer, Func<Task>? completeWrites = null, IDisposable? owner = null)
    {
        _reader = reader ?? throw new ArgumentNullException(nameof(reader));
        _writer = writer ?? throw new ArgumentNullException(nameof(writer));
        _completeWrites = completeWrites;
        _owner = owner;
    }

    private readonly IDisposable? _owner;

    /// <summary>Completes when the stream is disposed.</summary>
    public Task Completion => _completion.Task;

    public long BytesRead => Interlocked.Read(ref _bytesRead);

    public long BytesWritten => Interlocked.Read(ref _bytesWritten);

    public override bool CanRead => true;

    public override bool CanWrite => true;

    public override bool CanSeek => false;

    public override long Length => throw new NotSupportedException();

    public override long Position
    {
        get => throw new NotSupportedException();
        set => throw new NotSupportedException();
    }

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        while (_pending.IsEmpty)
        {
            if (_readEof)
            {
                return 0;
            }

            if (!await _reader.MoveNext(cancellationToken))
            {
                _readEof = true;
                return 0;
            }

            var frame = _reader.Current;
            if (frame.Error.Length > 0)
            {
                _readEof = true;
                throw new IOException($"the wire failed on the other side: {frame.Error}");
            }

            _pending = frame.Data.Memory;
            _readEof = frame.Eof;
        }

        if (buffer.IsEmpty)
        {
            return 0; // a zero-byte read: it waited until there is data to read
        }

        var count = Math.Min(buffer.Length, _pending.Length);
        _pending[..count].CopyTo(buffer);
        _pending = _pending[count..];
        Interlocked.Add(ref _bytesRead, count);
        return count;
    }

    public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        await _writeLock.WaitAsync(cancellationToken);
        try
        {
            ObjectDisposedException.ThrowIf(_writeEof, this);
            while (!buffer.IsEmpty)
            {
                var chunk = buffer[..Math.Min(MaxFrame, buffer.Length)];
                await _writer.WriteAsync(new WireFrame { Data = ByteString.CopyFrom(chunk.Span) }, cancellationToken);
                Interlocked.Add(ref _bytesWritten, chunk.Length);
                buffer = buffer[chunk.Length..];
            }
        }
        finally
        {
            _writeLock.Release();
        }
    }

    /// <summary>Says no more bytes will be written (the peer reads end of stream); reads go on.</summary>
    public async Task ShutdownWriteAsync(CancellationToken cancellationToken = default)
    {
        await _writeLock.WaitAsync(cancellationToken);
        try
        {
            if (_writeEof)
            {
                return;
            }

            _writeEof = true;
            await _writer.WriteAsync(new WireFrame { Eof = true }, cancellationToken);
            if (_completeWrites is not null)
            {
                await _completeWrites();
            }
        }
        finally
        {
            _writeLock.Release();
        }
    }

    /// <summary>
    /// Waits for the peer to end the call, after both directions are done. The side that opened
    /// the call must not end it first: a reset stream loses the bytes the peer has not read yet.
    /// </summary>
    public async Task WaitForCloseAsync(CancellationToken cancellationToken)
    {
        while (await _reader.MoveNext(cancellationToken))
        {
            // Nothing more is expected after the peer's eof.
        }
    }

    /// <summary>Tells the peer the wire failed here, and why; best effort.</summary>
    public async Task FailAsync(string reason)
    {
        await _writeLock.WaitAsync();
        try
        {
            if (!_writeEof)
            {
                _writeEof = true;
                await _writer.WriteAsync(new WireFrame { Error = reason });
            }
        }
        catch (Exception ex) when (ex is RpcException or InvalidOperationException or IOException or OperationCanceledException)
        {
            // The call is gone already: the peer sees that instead.
        }
        finally
        {
            _writeLock.Release();
        }
    }

    public override Task FlushAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public override void Flush()
    {
    }

    public override int Read(byte[] buffer, int offset, int count) => ReadAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();

    public override void Write(byte[] buffer, int offset, int count) => WriteAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _completion.TrySetResult();
            _writeLock.Dispose();
            _owner?.Dispose();
        }

        base.Dispose(disposing);
    }
}
