using Outpost.Core.Metrics;

namespace Outpost.Server.Monitoring;

/// <summary>
/// The server process's own garbage collector: collections by generation, time paused, bytes
/// allocated and the heap. A server holding thousands of node streams spends a share of its idle
/// CPU here (each young collection scans what the old generation points to), so sizing and
/// tuning read these beside the process's CPU.
/// </summary>
public sealed class RuntimeMetrics : IMetricsSource
{
    public Task WriteAsync(PrometheusText text, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(text);
        text.Counter("outpost_server_gc_total", "Garbage collections in the server since it started, by generation (a collection of generation 2 also counts in 1 and 0).");
        for (var generation = 0; generation <= GC.MaxGeneration; generation++)
        {
            text.Sample("outpost_server_gc_total", GC.CollectionCount(generation), ("generation", generation.ToString(System.Globalization.CultureInfo.InvariantCulture)));
        }

        text.Counter("outpost_server_gc_pause_seconds_total", "Time the server's threads were paused for garbage collection since it started.")
            .Sample("outpost_server_gc_pause_seconds_total", GC.GetTotalPauseDuration().TotalSeconds);
        text.Counter("outpost_server_allocated_bytes_total", "Bytes the server allocated on its managed heap since it started.")
            .Sample("outpost_server_allocated_bytes_total", GC.GetTotalAllocatedBytes());
        if (GC.GetConfigurationVariables().TryGetValue("GCGen0MaxBudget", out var budget) && budget is long or ulong or int)
        {
            text.Gauge("outpost_server_gc_gen0_budget_bytes", "The most the server allocates between two young collections (the collector's gen0 budget; the release binary's server sets 32 MB).")
                .Sample("outpost_server_gc_gen0_budget_bytes", Convert.ToDouble(budget, System.Globalization.CultureInfo.InvariantCulture));
        }

        var info = GC.GetGCMemoryInfo();
        text.Gauge("outpost_server_managed_heap_bytes", "The server's managed heap after its last garbage collection.").Sample("outpost_server_managed_heap_bytes", info.HeapSizeBytes);
        text.Gauge("outpost_server_managed_committed_bytes", "Memory the server's garbage collector holds committed (heap, free space kept for reuse, bookkeeping).")
            .Sample("outpost_server_managed_committed_bytes", info.TotalCommittedBytes);
        return Task.CompletedTask;
    }
}
