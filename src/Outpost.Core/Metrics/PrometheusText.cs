using System.Globalization;
using System.Text;

namespace Outpost.Core.Metrics;

/// <summary>
/// Writes the Prometheus text exposition format (0.0.4): each family once, HELP then TYPE,
/// its samples together; label values escaped. Families without samples are left out.
/// </summary>
public sealed class PrometheusText
{
    public const string ContentType = "text/plain; version=0.0.4; charset=utf-8";

    private readonly StringBuilder _text = new();
    private readonly HashSet<string> _families = new(StringComparer.Ordinal);
    private readonly IReadOnlySet<string>? _only;
    private (string Name, string Type, string Help)? _pending;
    private bool _skipping;

    public PrometheusText()
    {
    }

    /// <summary>
    /// Writes only the families named in <paramref name="only"/> (every family when it is null
    /// or empty): a scrape of a few families (<c>/metrics?name[]=outpost_nodes</c>) need not pay
    /// for every node's series.
    /// </summary>
    public PrometheusText(IReadOnlySet<string>? only) => _only = only is { Count: > 0 } ? only : null;

    /// <summary>True when family <paramref name="name"/> is written: worth computing its samples.</summary>
    public bool Wants(string name) => _only is null || _only.Contains(name);

    /// <summary>True when any family whose name starts with <paramref name="prefix"/> is written.</summary>
    public bool WantsAnyStartingWith(string prefix) => _only is null || _only.Any(n => n.StartsWith(prefix, StringComparison.Ordinal));

    /// <summary>Starts a family; its HELP and TYPE are written with its first sample.</summary>
    public PrometheusText Family(string name, string type, string help)
    {
        if (!_families.Add(name))
        {
            throw new InvalidOperationException($"metric family '{name}' written twice");
        }

        _skipping = !Wants(name);
        _pending = _skipping ? null : (name, type, help);
        return this;
    }

    public PrometheusText Counter(string name, string help) => Family(name, "counter", help);

    public PrometheusText Gauge(string name, string help) => Family(name, "gauge", help);

    public PrometheusText Histogram(string name, string help) => Family(name, "histogram", help);

    /// <summary>One sample of the current family (name may add a suffix such as _bucket).</summary>
    public PrometheusText Sample(string name, double value, params ReadOnlySpan<(string Name, string Value)> labels)
    {
        if (_skipping)
        {
            return this;
        }

        if (_pending is { } family)
        {
            _text.Append("# HELP ").Append(family.Name).Append(' ').Append(EscapeHelp(family.Help)).Append('\n');
            _text.Append("# TYPE ").Append(family.Name).Append(' ').Append(family.Type).Append('\n');
            _pending = null;
        }

        _text.Append(name);
        if (labels.Length > 0)
        {
            _text.Append('{');
            for (var i = 0; i < labels.Length; i++)
            {
                _text.Append(i == 0 ? "" : ",").Append(labels[i].Name).Append("=\"").Append(EscapeLabel(labels[i].Value)).Append('"');
            }

            _text.Append('}');
        }

        _text.Append(' ').Append(Format(value)).Append('\n');
        return this;
    }

    /// <summary>A histogram's samples from per-bucket (non-cumulative) counts: _bucket (cumulative, le), _sum and _count.</summary>
    public PrometheusText HistogramSamples(string name, IReadOnlyList<long> counts, double sum, params (string Name, string Value)[] labels)
    {
        ArgumentNullException.ThrowIfNull(counts);
        ArgumentNullException.ThrowIfNull(labels);
        long cumulative = 0;
        var withLe = new (string, string)[labels.Length + 1];
        labels.CopyTo(withLe, 0);
        for (var i = 0; i < LatencyBuckets.Count; i++)
        {
            cumulative += i < counts.Count ? counts[i] : 0;
            withLe[^1] = ("le", i < LatencyBuckets.Bounds.Count ? Format(LatencyBuckets.Bounds[i]) : "+Inf");
            Sample(name + "_bucket", cumulative, withLe);
        }

        Sample(name + "_sum", sum, labels);
        return Sample(name + "_count", cumulative, labels);
    }

    public override string ToString() => _text.ToString();

    private static string Format(double value) => value switch
    {
        double.PositiveInfinity => "+Inf",
        double.NegativeInfinity => "-Inf",
        double.NaN => "NaN",
        _ => value.ToString("R", CultureInfo.InvariantCulture),
    };

    private static string EscapeLabel(string value) =>
        value.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\"", "\\\"", StringComparison.Ordinal).Replace("\n", "\\n", StringComparison.Ordinal);

    private static string EscapeHelp(string value) =>
        value.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\n", "\\n", StringComparison.Ordinal);
}
