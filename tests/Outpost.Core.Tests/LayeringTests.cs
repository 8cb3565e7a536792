using Outpost.Core.Resources;

namespace Outpost.Core.Tests;

public sealed class LayeringTests
{
    [Fact]
    public void Core_ReferencesNoAdapter()
    {
        var references = typeof(ResourceKind).Assembly.GetReferencedAssemblies().Select(a => a.Name ?? "").ToList();

        Assert.Contains("YamlDotNet", references); // the check sees real references
        Assert.DoesNotContain(references, name =>
            name.StartsWith("Microsoft.AspNetCore", StringComparison.Ordinal) || name.StartsWith("Wasmtime", StringComparison.Ordinal)
            || name.Contains("Sqlite", StringComparison.OrdinalIgnoreCase) || name.StartsWith("Grpc", StringComparison.Ordinal)
            || name.StartsWith("Google.Protobuf", StringComparison.Ordinal) || name.StartsWith("Npgsql", StringComparison.Ordinal));
    }
}
