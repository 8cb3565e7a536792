namespace Outpost.Core.Selectors;

/// <summary>Parses the <c>k=v,k2=v2</c> label lists that flags take.</summary>
public static class Labels
{
    public static Dictionary<string, string> ParseList(string? text)
    {
        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        if (string.IsNullOrWhiteSpace(text))
        {
            return result;
        }

        foreach (var pair in text.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            var eq = pair.IndexOf('=', StringComparison.Ordinal);
            if (eq <= 0)
            {
                throw new FormatException($"label '{pair}' is not in the form key=value");
            }

            result[pair[..eq]] = pair[(eq + 1)..];
        }

        return result;
    }
}
