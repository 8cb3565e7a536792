namespace Outpost.IntegrationTests;

/// <summary>
/// Waits for another process to reach a state. Across processes there is no event to await,
/// so this probes (over HTTP or a read-only look at a file) until the condition holds, and
/// fails loudly with the last thing it saw when the timeout runs out. The one place tests wait.
/// </summary>
internal static class Eventually
{
    private static readonly TimeSpan Interval = TimeSpan.FromMilliseconds(100);

    public static async Task<T> UntilAsync<T>(Func<Task<T>> probe, Func<T, bool> done, TimeSpan timeout, string what, Func<T, string>? describe = null)
    {
        ArgumentNullException.ThrowIfNull(probe);
        ArgumentNullException.ThrowIfNull(done);
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            string last;
            try
            {
                var seen = await probe();
                if (done(seen))
                {
                    return seen;
                }

                last = describe is null ? seen?.ToString() ?? "null" : describe(seen);
            }
            catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException { InnerException: TimeoutException })
            {
                // A probe over HTTP that a loaded process answered too late or not at all: not yet.
                last = $"{ex.GetType().Name}: {ex.Message}";
            }

            if (DateTime.UtcNow > deadline)
            {
                Assert.Fail($"timed out after {timeout.TotalSeconds:F0} s waiting for {what}; last seen: {last}");
            }

            await Task.Delay(Interval);
        }
    }

    public static Task<T> UntilAsync<T>(Func<T> probe, Func<T, bool> done, TimeSpan timeout, string what, Func<T, string>? describe = null) =>
        UntilAsync(() => Task.FromResult(probe()), done, timeout, what, describe);
}
