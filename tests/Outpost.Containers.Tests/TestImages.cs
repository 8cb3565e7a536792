using System.Diagnostics;
using System.Formats.Tar;
using System.IO.Compression;
using System.Text;
using System.Text.Json.Nodes;
using Outpost.Containers.Images;
using Outpost.Core.Resources;

namespace Outpost.Containers.Tests;

/// <summary>OCI images made in the test: layers as tar+gzip written entry by entry, a config and a manifest.</summary>
public sealed class TestImage
{
    public Dictionary<string, byte[]> Blobs { get; } = new(StringComparer.Ordinal);

    public required string ManifestDigest { get; init; }

    public required IReadOnlyList<string> LayerDigests { get; init; }

    public static byte[] Layer(Action<TarWriter> write, bool gzip = true)
    {
        using var output = new MemoryStream();
        using (Stream target = gzip ? new GZipStream(output, CompressionLevel.Fastest, leaveOpen: true) : output)
        using (var tar = new TarWriter(target, TarEntryFormat.Pax, leaveOpen: true))
        {
            write(tar);
        }

        return output.ToArray();
    }

    public static void File(TarWriter tar, string name, string content, UnixFileMode mode = (UnixFileMode)0b110_100_100) =>
        File(tar, name, Encoding.UTF8.GetBytes(content), mode);

    public static void File(TarWriter tar, string name, byte[] content, UnixFileMode mode)
    {
        var entry = new PaxTarEntry(TarEntryType.RegularFile, name) { DataStream = new MemoryStream(content), Mode = mode };
        tar.WriteEntry(entry);
    }

    public static void Dir(TarWriter tar, string name) =>
        tar.WriteEntry(new PaxTarEntry(TarEntryType.Directory, name) { Mode = (UnixFileMode)0b111_101_101 });

    public static void Symlink(TarWriter tar, string name, string target) =>
        tar.WriteEntry(new PaxTarEntry(TarEntryType.SymbolicLink, name) { LinkName = target, Mode = (UnixFileMode)0b111_111_111 });

    public static void HardLink(TarWriter tar, string name, string target) =>
        tar.WriteEntry(new PaxTarEntry(TarEntryType.HardLink, name) { LinkName = target, Mode = (UnixFileMode)0b110_100_100 });

    public static void Device(TarWriter tar, string name) =>
        tar.WriteEntry(new PaxTarEntry(TarEntryType.CharacterDevice, name) { DeviceMajor = 1, DeviceMinor = 3, Mode = (UnixFileMode)0b110_110_110 });

    /// <summary>An image of <paramref name="layers"/> (tar+gzip each) that runs <paramref name="entrypoint"/>.</summary>
    public static TestImage Build(IReadOnlyList<byte[]> layers, string[] entrypoint, string? architecture = null, string[]? env = null)
    {
        var blobs = new Dictionary<string, byte[]>(StringComparer.Ordinal);
        var layerDigests = new List<string>();
        var diffIds = new JsonArray();
        foreach (var layer in layers)
        {
            var digest = Digest.Compute(layer);
            blobs[digest] = layer;
            layerDigests.Add(digest);
            using var unzip = new GZipStream(new MemoryStream(layer), CompressionMode.Decompress);
            using var plain = new MemoryStream();
            unzip.CopyTo(plain);
            diffIds.Add(Digest.Compute(plain.ToArray()));
        }

        var config = Encoding.UTF8.GetBytes(new JsonObject
        {
            ["architecture"] = architecture ?? ImageManifest.NodeArchitecture,
            ["os"] = "linux",
            ["config"] = new JsonObject
            {
                ["Entrypoint"] = new JsonArray([.. entrypoint.Select(e => (JsonNode)e)]),
                ["Env"] = new JsonArray([.. (env ?? ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]).Select(e => (JsonNode)e)]),
            },
            ["rootfs"] = new JsonObject { ["type"] = "layers", ["diff_ids"] = diffIds },
        }.ToJsonString());
        var configDigest = Digest.Compute(config);
        blobs[configDigest] = config;
        var layerArray = new JsonArray();
        foreach (var digest in layerDigests)
        {
            layerArray.Add(new JsonObject { ["mediaType"] = MediaTypes.OciLayerGzip, ["digest"] = digest, ["size"] = blobs[digest].Length });
        }

        var manifest = Encoding.UTF8.GetBytes(new JsonObject
        {
            ["schemaVersion"] = 2,
            ["mediaType"] = MediaTypes.OciManifest,
            ["config"] = new JsonObject { ["mediaType"] = MediaTypes.OciConfig, ["digest"] = configDigest, ["size"] = config.Length },
            ["layers"] = layerArray,
        }.ToJsonString());
        var manifestDigest = Digest.Compute(manifest);
        blobs[manifestDigest] = manifest;
        var image = new TestImage { ManifestDigest = manifestDigest, LayerDigests = layerDigests };
        foreach (var (digest, bytes) in blobs)
        {
            image.Blobs[digest] = bytes;
        }

        return image;
    }

    public async Task StoreAsync(ImageStore store)
    {
        foreach (var (digest, bytes) in Blobs)
        {
            await store.PutBlobAsync(new MemoryStream(bytes), digest, bytes.Length);
        }
    }

    /// <summary>Writes the image as an OCI image layout directory (what <c>skopeo copy oci:DIR:TAG</c> reads).</summary>
    public void WriteLayout(string directory, string tag)
    {
        Directory.CreateDirectory(Path.Combine(directory, "blobs", "sha256"));
        foreach (var (digest, bytes) in Blobs)
        {
            System.IO.File.WriteAllBytes(Path.Combine(directory, "blobs", "sha256", digest["sha256:".Length..]), bytes);
        }

        System.IO.File.WriteAllText(Path.Combine(directory, "oci-layout"), """{"imageLayoutVersion":"1.0.0"}""");
        System.IO.File.WriteAllText(Path.Combine(directory, "index.json"), new JsonObject
        {
            ["schemaVersion"] = 2,
            ["manifests"] = new JsonArray(new JsonObject
            {
                ["mediaType"] = MediaTypes.OciManifest,
                ["digest"] = ManifestDigest,
                ["size"] = Blobs[ManifestDigest].Length,
                ["annotations"] = new JsonObject { ["org.opencontainers.image.ref.name"] = tag },
            }),
        }.ToJsonString());
    }
}

/// <summary>The container sample (samples/containers/hello), compiled once per test run with gcc -static.</summary>
public static class HelloSample
{
    private static readonly Lazy<byte[]?> Binary = new(Compile);

    /// <summary>The static binary, or null when there is no C compiler here (the tests that need it skip).</summary>
    public static byte[]? Bytes => Binary.Value;

    /// <summary>An image with the binary as /hello, its entrypoint.</summary>
    public static TestImage Image(string greeting = "hello")
    {
        var binary = Bytes ?? throw new InvalidOperationException("gcc is not available");
        var layer = TestImage.Layer(tar =>
        {
            TestImage.File(tar, "hello", binary, (UnixFileMode)0b111_101_101);
        });
        return TestImage.Build([layer], ["/hello"], env: ["PATH=/", $"GREETING={greeting}"]);
    }

    private static byte[]? Compile()
    {
        var source = Path.Combine(AppContext.BaseDirectory, "Samples", "hello.c");
        var output = Path.Combine(Path.GetTempPath(), $"outpost-hello-{Environment.ProcessId}");
        try
        {
            using var gcc = Process.Start(new ProcessStartInfo("gcc", ["-static", "-Os", "-Wall", "-Wextra", "-Werror", "-o", output, source])
            {
                RedirectStandardError = true,
                RedirectStandardOutput = true,
            });
            if (gcc is null)
            {
                return null;
            }

            var error = gcc.StandardError.ReadToEnd();
            gcc.WaitForExit();
            if (gcc.ExitCode != 0)
            {
                throw new InvalidOperationException($"gcc failed: {error}");
            }

            return System.IO.File.ReadAllBytes(output);
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return null;
        }
        finally
        {
            System.IO.File.Delete(output);
        }
    }
}

/// <summary>A temp directory removed after the test.</summary>
public sealed class TempDir : IDisposable
{
    public string Path { get; } = Directory.CreateTempSubdirectory("outpost-containers-").FullName;

    public void Dispose()
    {
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
