using System.Text.Json.Nodes;

namespace Outpost.Core.Manifests;

/// <summary>One YAML document of a manifest file; Index is 1-based, as users count.</summary>
public sealed record ManifestDocument(string Source, int Index, JsonObject Body)
{
    public string Location => $"{Source} (document {Index})";
}

/// <summary>A problem with one field of one document.</summary>
public sealed record FieldError(string Field, string Message)
{
    public override string ToString() => Field.Length == 0 ? Message : $"{Field}: {Message}";
}

/// <summary>Thrown when manifests cannot be read or are invalid; carries every problem found.</summary>
public sealed class ManifestException : Exception
{
    public ManifestException(IReadOnlyList<string> errors)
        : base(string.Join(Environment.NewLine, errors)) => Errors = errors;

    public ManifestException(string message)
        : this([message])
    {
    }

    public ManifestException()
        : this([])
    {
    }

    public ManifestException(string message, Exception innerException)
        : base(message, innerException) => Errors = [message];

    public IReadOnlyList<string> Errors { get; }
}
