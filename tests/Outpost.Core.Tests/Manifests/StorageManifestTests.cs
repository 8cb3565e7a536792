using System.Formats.Tar;
using Outpost.Core.Manifests;
using Outpost.Core.Resources;

namespace Outpost.Core.Tests.Manifests;

/// <summary>spec.files and spec.volumes: what is accepted, what is refused and why, and the files archive.</summary>
public sealed class StorageManifestTests
{
    private const string App = """
        apiVersion: outpost.dev/v1
        kind: Application
        metadata: {name: notes}
        spec:
          module: {path: notes.wasm}
          triggers: {http: {route: /notes}}
        """;

    private static IReadOnlyList<FieldError> Validate(string extra, bool allowPath = true) =>
        ManifestValidator.Validate(YamlManifestReader.Read(App + "\n" + extra, "t.yaml")[0].Body, allowPath);

    [Fact]
    public void FilesAndVolumes_AreRead()
    {
        const string extra = """
              files: [{path: static, mountPath: /static}]
              volumes: [{name: data, mountPath: /data, sizeLimit: 10Mi}, {name: cache, mountPath: /cache}]
            """;
        Assert.Empty(Validate(extra));
        var spec = ApplicationSpec.FromJson((System.Text.Json.Nodes.JsonObject)YamlManifestReader.Read(App + "\n" + extra, "t.yaml")[0].Body["spec"]!);
        Assert.Equal(new FilesMount(null, "static", "/static"), spec.Files.Single());
        Assert.Equal([new VolumeSpec("data", "/data", 10L << 20), new VolumeSpec("cache", "/cache", VolumeSpec.DefaultSizeLimit)], spec.Volumes);
    }

    [Theory]
    [InlineData("volumes: [{name: data, mountPath: data}]", "spec.volumes[0].mountPath", "not a mount path")]
    [InlineData("volumes: [{name: data, mountPath: /a/../b}]", "spec.volumes[0].mountPath", "not a mount path")]
    [InlineData("volumes: [{name: data, mountPath: /d}, {name: data, mountPath: /e}]", "spec.volumes[1].name", "declared twice")]
    [InlineData("volumes: [{name: a, mountPath: /d}, {name: b, mountPath: /d}]", "spec.volumes[1].mountPath", "already mounted by spec.volumes[0]")]
    [InlineData("volumes: [{name: Data, mountPath: /d}]", "spec.volumes[0].name", "not a volume name")]
    [InlineData("volumes: [{name: d, mountPath: /d, sizeLimit: 10Xi}]", "spec.volumes[0].sizeLimit", "expected a size")]
    [InlineData("volumes: [{name: d, mountPath: /d, sizeLimit: 2Ti}]", "spec.volumes[0].sizeLimit", "at most 1Ti")]
    [InlineData("volumes: [{name: d, mountPath: /d, size: 1}]", "spec.volumes[0].size", "unknown field")]
    [InlineData("files: [{path: s, digest: 'sha256:0000000000000000000000000000000000000000000000000000000000000000', mountPath: /s}]", "spec.files[0]", "not both")]
    [InlineData("files: [{mountPath: /s}]", "spec.files[0]", "required")]
    [InlineData("files: [{digest: sha256:zz, mountPath: /s}]", "spec.files[0].digest", "not a digest")]
    [InlineData("files: [{path: s, mountPath: /d}]\n  volumes: [{name: d, mountPath: /d}]", "spec.volumes[0].mountPath", "already mounted by spec.files[0]")]
    public void BadStorage_IsRefused_NamingTheField(string extra, string field, string message)
    {
        var errors = Validate("  " + extra);
        Assert.Contains(errors, e => e.Field == field && e.Message.Contains(message, StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("capabilities: [nn]\n  models: [{name: hadamard, path: m.onnx}]", null, null)]
    [InlineData("models: [{name: hadamard, path: m.onnx}]", "spec.models", "add capability 'nn'")]
    [InlineData("capabilities: [nn]\n  models: [{name: a, path: m.onnx}, {name: a, path: n.onnx}]", "spec.models[1].name", "declared twice")]
    [InlineData("capabilities: [nn]\n  models: [{name: 'bad name', path: m.onnx}]", "spec.models[0].name", "not a model name")]
    [InlineData("capabilities: [nn]\n  models: [{name: a}]", "spec.models[0]", "required")]
    [InlineData("capabilities: [nn]\n  models: [{name: a, digest: sha256:x}]", "spec.models[0].digest", "not a digest")]
    public void Models_AreNamedUploadedAndNeedCapabilityNn(string extra, string? field, string? message)
    {
        var errors = Validate("  " + extra);
        if (field is null)
        {
            Assert.Empty(errors);
            var spec = ApplicationSpec.FromJson((System.Text.Json.Nodes.JsonObject)YamlManifestReader.Read(App + "\n  " + extra, "t.yaml")[0].Body["spec"]!);
            Assert.Equal(new ModelSpec("hadamard", null, "m.onnx"), spec.Models.Single());
            Assert.True(spec.NeedsAi);
        }
        else
        {
            Assert.Contains(errors, e => e.Field == field && e.Message.Contains(message!, StringComparison.Ordinal));
        }
    }

    [Fact]
    public void OnnxModelFile_KnowsAModel_FromJunkAndFromATruncatedOne()
    {
        var model = File.ReadAllBytes(Path.Combine(AppContext.BaseDirectory, "hadamard.onnx"));
        Assert.Null(OnnxModelFile.Problem(model));
        Assert.Contains("truncated", OnnxModelFile.Problem(model.AsSpan(0, model.Length / 2)), StringComparison.Ordinal);
        Assert.StartsWith("not an ONNX model", OnnxModelFile.Problem("\0asm\x01\0\0\0 a wasm module, not a model"u8), StringComparison.Ordinal);
        Assert.Equal("the file is empty", OnnxModelFile.Problem([]));
    }

    [Fact]
    public void TheServer_CannotReadALocalFilesPath()
    {
        var errors = Validate("  files: [{path: static, mountPath: /static}]", allowPath: false);
        Assert.Contains(errors, e => e.Field == "spec.files[0].path" && e.Message.Contains("outpost apply -f", StringComparison.Ordinal));
    }

    [Fact]
    public void ContainerApps_MountNothing()
    {
        var doc = """
            apiVersion: outpost.dev/v1
            kind: Application
            metadata: {name: c}
            spec:
              image: hello:1
              triggers: {http: {route: /c}}
              volumes: [{name: d, mountPath: /d}]
            """;
        var errors = ManifestValidator.Validate(YamlManifestReader.Read(doc, "t.yaml")[0].Body, true);
        Assert.Contains(errors, e => e.Field == "spec.volumes" && e.Message.Contains("container", StringComparison.Ordinal));
    }

    [Fact]
    public void FilesArchive_PacksReproducibly_AndUnpacksWhatWasPacked()
    {
        var source = Directory.CreateTempSubdirectory("outpost-files-").FullName;
        var target = Path.Combine(Path.GetTempPath(), $"outpost-files-out-{Guid.NewGuid():N}");
        try
        {
            Directory.CreateDirectory(Path.Combine(source, "nested", "deeper"));
            File.WriteAllText(Path.Combine(source, "hello.txt"), "hello\n");
            File.WriteAllText(Path.Combine(source, "nested", "deeper", "x.txt"), "x");
            var first = FilesArchive.Pack(source);
            File.SetLastWriteTimeUtc(Path.Combine(source, "hello.txt"), DateTime.UtcNow.AddDays(-3));
            Assert.Equal(Digest.Compute(first), Digest.Compute(FilesArchive.Pack(source)));

            FilesArchive.Extract(first, target);
            Assert.Equal("hello\n", File.ReadAllText(Path.Combine(target, "hello.txt")));
            Assert.Equal("x", File.ReadAllText(Path.Combine(target, "nested", "deeper", "x.txt")));

            File.CreateSymbolicLink(Path.Combine(source, "link"), "hello.txt");
            var refused = Assert.Throws<InvalidDataException>(() => FilesArchive.Pack(source));
            Assert.Contains("'link' is a symbolic link", refused.Message, StringComparison.Ordinal);
        }
        finally
        {
            Directory.Delete(source, recursive: true);
            if (Directory.Exists(target))
            {
                Directory.Delete(target, recursive: true);
            }
        }
    }

    [Fact]
    public void FilesArchive_WithLinksOrEscapingNames_IsRefused()
    {
        using var output = new MemoryStream();
        using (var writer = new TarWriter(output, TarEntryFormat.Ustar, leaveOpen: true))
        {
            writer.WriteEntry(new UstarTarEntry(TarEntryType.SymbolicLink, "etc") { LinkName = "/etc" });
            var escaping = new UstarTarEntry(TarEntryType.RegularFile, "../outside.txt") { DataStream = new MemoryStream("x"u8.ToArray()) };
            writer.WriteEntry(escaping);
        }

        var problems = FilesArchive.Validate(output.ToArray());
        Assert.Contains(problems, p => p.Contains("'etc' is a SymbolicLink entry", StringComparison.Ordinal));
        Assert.Contains(problems, p => p.Contains("'../outside.txt' is not a relative path inside the archive", StringComparison.Ordinal));
        Assert.Contains(FilesArchive.Validate("not a tar at all, just some text that is long enough to be read as a header"u8.ToArray()), p => p.StartsWith("not a tar archive", StringComparison.Ordinal));
    }
}
