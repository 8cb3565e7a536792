using System.Text.Json;
using Outpost.Core.Manifests;

namespace Outpost.Core.Tests.Manifests;

public sealed class YamlManifestReaderTests
{
    [Fact]
    public void Scalars_AreTypedAsYamlCoreSchema()
    {
        var doc = YamlManifestReader.Read("a: 80\nb: \"80\"\nc: true\nd: ~\ne: 1.5\nf: hello\n", "t.yaml")[0].Body;

        Assert.Equal(JsonValueKind.Number, doc["a"]!.GetValueKind());
        Assert.Equal(JsonValueKind.String, doc["b"]!.GetValueKind());
        Assert.Equal(JsonValueKind.True, doc["c"]!.GetValueKind());
        Assert.Null(doc["d"]);
        Assert.Equal(1.5, doc["e"]!.GetValue<double>());
        Assert.Equal("hello", doc["f"]!.GetValue<string>());
    }

    [Fact]
    public void MultipleDocuments_AreIndexedFromOneAndEmptyOnesSkipped()
    {
        var docs = YamlManifestReader.Read("a: 1\n---\n---\nb: 2\n", "t.yaml");

        Assert.Equal([1, 3], docs.Select(d => d.Index));
    }

    [Fact]
    public void DuplicateKey_IsAnError()
    {
        var ex = Assert.Throws<ManifestException>(() => YamlManifestReader.Read("a: 1\na: 2\n", "t.yaml"));

        Assert.Contains("t.yaml: invalid YAML at line 2", ex.Message, StringComparison.Ordinal);
        Assert.Contains("duplicate", ex.Message, StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public void ScalarDocument_IsAnErrorNamingTheDocument()
    {
        var ex = Assert.Throws<ManifestException>(() => YamlManifestReader.Read("just text\n", "t.yaml"));

        Assert.Contains("t.yaml (document 1)", ex.Message, StringComparison.Ordinal);
    }
}
