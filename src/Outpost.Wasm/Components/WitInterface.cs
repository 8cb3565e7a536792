namespace Outpost.Wasm.Components;

/// <summary>
/// One interface the host provides to components (<c>wasi:io/streams@0.2.x</c>): its resources and
/// functions, by their names in the component model (<c>[method]input-stream.read</c>). Defined in the
/// linker once; also what a component's imports are checked against before it is accepted.
/// </summary>
internal sealed class WitInterface(string package, string name, string version)
{
    private readonly Dictionary<string, HostFunction> _functions = new(StringComparer.Ordinal);
    private readonly Dictionary<string, ResourceType> _resources = new(StringComparer.Ordinal);

    /// <summary>"wasi:io" or "outpost:edge".</summary>
    public string Package { get; } = package;

    public string Name { get; } = name;

    /// <summary>The version it is defined at; any version of the same major.minor (any 0.2.x) links to it.</summary>
    public string Version { get; } = version;

    /// <summary>The name the linker defines: <c>wasi:io/streams@0.2.12</c>.</summary>
    public string FullName => $"{Package}/{Name}@{Version}";

    /// <summary>The name without its version: <c>wasi:io/streams</c>.</summary>
    public string Unversioned => $"{Package}/{Name}";

    /// <summary>The capability an app must declare to import it, or null when any app may.</summary>
    public string? Capability { get; init; }

    public IReadOnlyDictionary<string, HostFunction> Functions => _functions;

    public IReadOnlyDictionary<string, ResourceType> Resources => _resources;

    public WitInterface Resource(string name, ResourceType type)
    {
        _resources.Add(name, type);
        return this;
    }

    public WitInterface Func(string name, HostFunction function)
    {
        _functions.Add(name, function);
        return this;
    }

    /// <summary>A method: <c>[method]resource.name</c>.</summary>
    public WitInterface Method(string resource, string name, HostFunction function) => Func($"[method]{resource}.{name}", function);

    public WitInterface Static(string resource, string name, HostFunction function) => Func($"[static]{resource}.{name}", function);

    public WitInterface Constructor(string resource, HostFunction function) => Func($"[constructor]{resource}", function);

    /// <summary>Functions that can never be reached with a valid handle (no such resource is ever made), defined as traps.</summary>
    public WitInterface Unreachable(string why, params ReadOnlySpan<string> names)
    {
        foreach (var name in names)
        {
            _functions.Add(name, (ref HostCall _) => throw new GuestTrapException($"{FullName} {name}: {why}"));
        }

        return this;
    }

    /// <summary>Whether <paramref name="name"/> (an import's instance name) is this interface at a compatible version.</summary>
    public bool Matches(string name, out string? versionProblem)
    {
        versionProblem = null;
        var at = name.IndexOf('@', StringComparison.Ordinal);
        if ((at < 0 ? name : name[..at]) != Unversioned)
        {
            return false;
        }

        var version = at < 0 ? "" : name[(at + 1)..];
        if (!SameMinor(version, Version))
        {
            versionProblem = $"'{name}' is version {(version.Length == 0 ? "(none)" : version)}; this host provides {Unversioned} at {MinorOf(Version)}.x";
            return false;
        }

        return true;
    }

    private static bool SameMinor(string version, string ours) =>
        version.Length > 0 && !version.Contains('-', StringComparison.Ordinal) && MinorOf(version) == MinorOf(ours);

    private static string MinorOf(string version)
    {
        var parts = version.Split('.');
        return parts.Length >= 2 ? $"{parts[0]}.{parts[1]}" : version;
    }
}
