using Outpost.Core.Metrics;

namespace Outpost.Core.Tests.Metrics;

public sealed class MetricsTests
{
    [Fact]
    public void PrometheusText_WritesHelpAndTypeOnce_EscapesLabels_AndLeavesOutEmptyFamilies()
    {
        var text = new PrometheusText();
        text.Counter("outpost_x_total", "Things.\nCounted.")
            .Sample("outpost_x_total", 3, ("app", "a\"b\\c"), ("node", "n\n1"))
            .Sample("outpost_x_total", 1.5, ("app", "d"));
        text.Gauge("outpost_empty", "Never sampled.");
        text.Gauge("outpost_y", "A gauge.").Sample("outpost_y", double.PositiveInfinity);

        Assert.Equal(
            "# HELP outpost_x_total Things.\\nCounted.\n# TYPE outpost_x_total counter\n" +
            "outpost_x_total{app=\"a\\\"b\\\\c\",node=\"n\\n1\"} 3\noutpost_x_total{app=\"d\"} 1.5\n" +
            "# HELP outpost_y A gauge.\n# TYPE outpost_y gauge\noutpost_y +Inf\n",
            text.ToString());
        Assert.Throws<InvalidOperationException>(() => text.Gauge("outpost_y", "again"));
    }

    [Fact]
    public void PrometheusText_WithFamiliesNamed_WritesThoseAlone()
    {
        var text = new PrometheusText(new HashSet<string>(StringComparer.Ordinal) { "outpost_y", "outpost_h_seconds" });
        Assert.True(text.Wants("outpost_y"));
        Assert.False(text.Wants("outpost_x_total"));
        Assert.True(text.WantsAnyStartingWith("outpost_h_"));
        Assert.False(text.WantsAnyStartingWith("outpost_app_"));
        text.Counter("outpost_x_total", "Things.").Sample("outpost_x_total", 3, ("app", "a"));
        text.Gauge("outpost_y", "A gauge.").Sample("outpost_y", 2);
        text.Histogram("outpost_h_seconds", "Durations.").HistogramSamples("outpost_h_seconds", new long[LatencyBuckets.Count], 0);
        text.Gauge("outpost_z", "Another.").Sample("outpost_z", 1);

        var written = text.ToString();
        Assert.StartsWith("# HELP outpost_y A gauge.\n# TYPE outpost_y gauge\noutpost_y 2\n# HELP outpost_h_seconds Durations.\n", written, StringComparison.Ordinal);
        Assert.Contains("outpost_h_seconds_count 0\n", written, StringComparison.Ordinal);
        Assert.DoesNotContain("outpost_x_total", written, StringComparison.Ordinal);
        Assert.DoesNotContain("outpost_z", written, StringComparison.Ordinal);
        // A family named twice is still an error when it is not written.
        Assert.Throws<InvalidOperationException>(() => text.Gauge("outpost_z", "again"));

        // No names (or none given): every family.
        var all = new PrometheusText(new HashSet<string>());
        all.Gauge("outpost_z", "Another.").Sample("outpost_z", 1);
        Assert.Equal("# HELP outpost_z Another.\n# TYPE outpost_z gauge\noutpost_z 1\n", all.ToString());
    }

    [Fact]
    public void HistogramSamples_AreCumulative_WithSumAndCount()
    {
        var counts = new long[LatencyBuckets.Count];
        counts[LatencyBuckets.IndexOf(0.0007)] = 2; // le 0.001
        counts[LatencyBuckets.IndexOf(30)] = 1; // +Inf
        var text = new PrometheusText().Histogram("outpost_d_seconds", "Durations.").HistogramSamples("outpost_d_seconds", counts, 30.0014, ("app", "a")).ToString();

        Assert.Contains("outpost_d_seconds_bucket{app=\"a\",le=\"0.0005\"} 0\n", text, StringComparison.Ordinal);
        Assert.Contains("outpost_d_seconds_bucket{app=\"a\",le=\"0.001\"} 2\n", text, StringComparison.Ordinal);
        Assert.Contains("outpost_d_seconds_bucket{app=\"a\",le=\"10\"} 2\n", text, StringComparison.Ordinal);
        Assert.Contains("outpost_d_seconds_bucket{app=\"a\",le=\"+Inf\"} 3\n", text, StringComparison.Ordinal);
        Assert.Contains("outpost_d_seconds_sum{app=\"a\"} 30.0014\noutpost_d_seconds_count{app=\"a\"} 3\n", text, StringComparison.Ordinal);
    }

    [Fact]
    public void Quantile_InterpolatesInsideTheBucket_LikeHistogramQuantile()
    {
        var counts = new long[LatencyBuckets.Count];
        Assert.Null(LatencyBuckets.Quantile(counts, 0.99));
        counts[LatencyBuckets.IndexOf(0.003)] = 100; // (0.0025, 0.005]
        Assert.Equal(0.00375, LatencyBuckets.Quantile(counts, 0.5)!.Value, 6);
        counts[LatencyBuckets.IndexOf(0.2)] = 100; // (0.1, 0.25]
        Assert.Equal(0.1 + (0.15 * 98 / 100), LatencyBuckets.Quantile(counts, 0.99)!.Value, 6);
        counts[^1] = 1000;
        Assert.Equal(10, LatencyBuckets.Quantile(counts, 0.99));
    }

    [Fact]
    public void RequestStats_AddsDeltas_AndRefusesAForeignHistogram()
    {
        var total = new RequestStats();
        var delta = new RequestStats { Requests = 5, ServerErrors = 2, Timeouts = 1, LatencySumSeconds = 0.5, MemoryPeakBytes = 65536 };
        delta.AddBuckets([1, 0, 4]);
        total.Add(delta);
        total.Add(new RequestStats { Requests = 1, MemoryPeakBytes = 1024 });

        Assert.Equal(6, total.Requests);
        Assert.Equal(65536, total.MemoryPeakBytes); // a peak, not a sum
        Assert.Equal([1L, 0, 4], total.TrimmedBuckets());
        var error = Assert.Throws<InvalidDataException>(() => total.AddBuckets(new long[LatencyBuckets.Count + 1]));
        Assert.Contains($"Outpost uses {LatencyBuckets.Count}", error.Message, StringComparison.Ordinal);
    }
}
