using System.Collections.Concurrent;

namespace Outpost.Server.Security;

/// <summary>
/// Rate-limits failed joins per source address: after <see cref="MaxFailures"/> failures
/// within <see cref="Window"/>, joins from that address are refused outright until the
/// window has passed since the latest failure, so join tokens cannot be guessed at speed.
/// </summary>
public sealed class JoinGuard(TimeProvider time)
{
    public const int MaxFailures = 5;

    public static readonly TimeSpan Window = TimeSpan.FromMinutes(1);

    private readonly ConcurrentDictionary<string, Queue<DateTimeOffset>> _failures = new(StringComparer.Ordinal);

    /// <summary>How long the address must wait before trying again; zero when it may try now.</summary>
    public TimeSpan RetryAfter(string address)
    {
        if (!_failures.TryGetValue(address, out var failures))
        {
            return TimeSpan.Zero;
        }

        lock (failures)
        {
            Trim(failures);
            return failures.Count < MaxFailures ? TimeSpan.Zero : failures.Last() + Window - time.GetUtcNow();
        }
    }

    public void Failed(string address)
    {
        var failures = _failures.GetOrAdd(address, _ => new Queue<DateTimeOffset>());
        lock (failures)
        {
            Trim(failures);
            failures.Enqueue(time.GetUtcNow());
        }
    }

    private void Trim(Queue<DateTimeOffset> failures)
    {
        var cutoff = time.GetUtcNow() - Window;
        while (failures.Count > 0 && failures.Peek() < cutoff)
        {
            failures.Dequeue();
        }
    }
}
