using Outpost.Containers.Images;

namespace Outpost.Containers.Tests.Images;

public class LayerExtractorTests
{
    private static void Apply(byte[] layer, string root) => LayerExtractor.Apply(new MemoryStream(layer), LayerCompression.Gzip, root);

    [SkippableFact]
    public void Layers_ApplyInOrder_WithWhiteoutsOpaqueDirectoriesLinksAndModes()
    {
        Skip.IfNot(Environment.IsPrivilegedProcess, "unpacking sets owners: needs root");
        using var temp = new TempDir();
        var root = Path.Combine(temp.Path, "rootfs");
        Apply(TestImage.Layer(tar =>
        {
            TestImage.Dir(tar, "etc/");
            TestImage.File(tar, "etc/motd", "lower\n");
            TestImage.File(tar, "etc/gone", "to be whited out\n");
            TestImage.Dir(tar, "usr/bin/");
            TestImage.File(tar, "usr/bin/tool", "#!/bin/sh\n", (UnixFileMode)0b111_101_101);
            TestImage.Symlink(tar, "bin", "usr/bin");
            TestImage.Dir(tar, "data/");
            TestImage.File(tar, "data/old", "old\n");
        }), root);
        Apply(TestImage.Layer(tar =>
        {
            TestImage.File(tar, "etc/motd", "upper\n");
            TestImage.File(tar, "etc/.wh.gone", "");
            TestImage.File(tar, "data/new", "new\n");
            TestImage.File(tar, "data/.wh..wh..opq", "");
            TestImage.HardLink(tar, "usr/bin/tool2", "usr/bin/tool");
            TestImage.File(tar, "bin/added", "through a link inside the root\n");
        }), root);

        Assert.Equal("upper\n", File.ReadAllText(Path.Combine(root, "etc/motd")));
        Assert.False(File.Exists(Path.Combine(root, "etc/gone")));
        Assert.Equal(["new"], Directory.GetFiles(Path.Combine(root, "data")).Select(Path.GetFileName));
        Assert.Equal("usr/bin", new FileInfo(Path.Combine(root, "bin")).LinkTarget);
        Assert.Equal("through a link inside the root\n", File.ReadAllText(Path.Combine(root, "usr/bin/added")));
        Assert.Equal((UnixFileMode)0b111_101_101, File.GetUnixFileMode(Path.Combine(root, "usr/bin/tool")));
        File.AppendAllText(Path.Combine(root, "usr/bin/tool"), "echo linked\n");
        Assert.Equal("#!/bin/sh\necho linked\n", File.ReadAllText(Path.Combine(root, "usr/bin/tool2")));
    }

    public static TheoryData<string, byte[]> Attacks => new()
    {
        { "climbs out of the image's root with '..'", TestImage.Layer(tar => TestImage.File(tar, "../../escaped", "x")) },
        { "climbs out of the image's root with '..'", TestImage.Layer(tar => TestImage.File(tar, "a/../../escaped", "x")) },
        {
            "an absolute path that would leave the image's root", TestImage.Layer(tar =>
            {
                TestImage.Symlink(tar, "evil", "OUTSIDE");
                TestImage.File(tar, "evil/escaped", "x");
            })
        },
        {
            "points above the image's root", TestImage.Layer(tar =>
            {
                TestImage.Dir(tar, "a/");
                TestImage.Symlink(tar, "a/up", "../..");
                TestImage.File(tar, "a/up/escaped", "x");
            })
        },
        { "is a device node", TestImage.Layer(tar => TestImage.Device(tar, "dev/mem")) },
        { "climbs out of the image's root with '..'", TestImage.Layer(tar => TestImage.HardLink(tar, "link", "../outside-file")) },
        {
            "an absolute path that would leave the image's root", TestImage.Layer(tar =>
            {
                TestImage.Symlink(tar, "evil", "OUTSIDE");
                TestImage.HardLink(tar, "link", "evil/outside-file");
            })
        },
        { "is a hard link to 'missing'", TestImage.Layer(tar => TestImage.HardLink(tar, "link", "missing")) },
    };

    [SkippableTheory]
    [MemberData(nameof(Attacks))]
    public async Task AnEntryThatWouldLeaveTheRoot_RefusesTheImage_AndNothingIsWrittenOutside(string reason, byte[] layer)
    {
        Skip.IfNot(Environment.IsPrivilegedProcess, "unpacking sets owners: needs root");
        using var temp = new TempDir();
        var outside = Path.Combine(temp.Path, "outside");
        Directory.CreateDirectory(outside);
        File.WriteAllText(Path.Combine(outside, "outside-file"), "host\n");
        var before = Snapshot(temp.Path);

        // The absolute symlink targets the real directory outside, as an attacker would aim at /etc.
        layer = Rewrite(layer, "OUTSIDE", outside);
        var image = TestImage.Build([layer], ["/x"]);
        using var store = new ImageStore(Path.Combine(temp.Path, "store"));
        await image.StoreAsync(store);

        var refused = await Assert.ThrowsAsync<ImageException>(() => store.UnpackAsync(image.ManifestDigest));

        Assert.Contains(reason, refused.Message, StringComparison.Ordinal);
        Assert.Contains(image.LayerDigests[0], refused.Message, StringComparison.Ordinal);
        Assert.Equal(before, Snapshot(temp.Path).Where(p => !p.StartsWith("store", StringComparison.Ordinal)));
        Assert.Empty(Directory.EnumerateFileSystemEntries(Path.Combine(store.Directory, "rootfs")));
        Assert.Empty(Directory.EnumerateFileSystemEntries(Path.Combine(store.Directory, "tmp")));
        Assert.Equal("host\n", File.ReadAllText(Path.Combine(outside, "outside-file")));
    }

    [Fact]
    public async Task ABlobWhoseBytesDoNotMatchItsDigest_IsNotKept()
    {
        using var temp = new TempDir();
        using var store = new ImageStore(temp.Path);
        var digest = Outpost.Core.Resources.Digest.Compute("the real bytes"u8);

        var refused = await Assert.ThrowsAsync<ImageException>(() => store.PutBlobAsync(new MemoryStream("forged bytes"u8.ToArray()), digest));

        Assert.Contains("does not match its digest", refused.Message, StringComparison.Ordinal);
        Assert.False(store.HasBlob(digest));
        Assert.Empty(Directory.EnumerateFileSystemEntries(Path.Combine(store.Directory, "tmp")));
    }

    [Fact]
    public async Task AnImageForAnotherArchitecture_IsRefusedByName()
    {
        using var temp = new TempDir();
        using var store = new ImageStore(temp.Path);
        var other = ImageManifest.NodeArchitecture == "arm64" ? "amd64" : "arm64";
        var image = TestImage.Build([TestImage.Layer(tar => TestImage.File(tar, "x", "x"))], ["/x"], architecture: other);
        await image.StoreAsync(store);

        var refused = await Assert.ThrowsAsync<ImageException>(() => store.UnpackAsync(image.ManifestDigest));

        Assert.Equal($"the image is for linux/{other}, but this node is linux/{ImageManifest.NodeArchitecture}", refused.Message);
    }

    [Theory]
    [InlineData("""{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"x","digest":"sha256:00","size":1},"layers":[]}""", "config has digest 'sha256:00'")]
    [InlineData("""{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"x","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":1},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+zstd","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":1}]}""", "unsupported media type 'application/vnd.oci.image.layer.v1.tar+zstd'")]
    [InlineData("""{"schemaVersion":1,"mediaType":"application/vnd.docker.distribution.manifest.v1+json"}""", "Docker schema 1 is deprecated")]
    [InlineData("""{"mediaType":"text/plain"}""", "unsupported manifest media type 'text/plain'")]
    [InlineData("not json", "the manifest is not valid JSON")]
    public void BadManifests_AreRefusedWithWhatIsWrong(string json, string expected)
    {
        var refused = Assert.Throws<ImageException>(() => ImageManifest.Parse(System.Text.Encoding.UTF8.GetBytes(json)));
        Assert.Contains(expected, refused.Message, StringComparison.Ordinal);
    }

    private static List<string> Snapshot(string directory) =>
        [.. Directory.EnumerateFileSystemEntries(directory, "*", SearchOption.AllDirectories).Select(p => Path.GetRelativePath(directory, p)).Order(StringComparer.Ordinal)];

    /// <summary>Puts a path known only at run time into a layer's symlink target.</summary>
    private static byte[] Rewrite(byte[] layer, string placeholder, string value)
    {
        using var input = new System.IO.Compression.GZipStream(new MemoryStream(layer), System.IO.Compression.CompressionMode.Decompress);
        using var reader = new System.Formats.Tar.TarReader(input);
        var entries = new List<System.Formats.Tar.PaxTarEntry>();
        while (reader.GetNextEntry(copyData: true) is { } entry)
        {
            var copy = new System.Formats.Tar.PaxTarEntry(entry.EntryType, entry.Name) { Mode = entry.Mode };
            if (entry.DataStream is { } data)
            {
                copy.DataStream = data;
            }

            if (entry.EntryType is System.Formats.Tar.TarEntryType.SymbolicLink or System.Formats.Tar.TarEntryType.HardLink)
            {
                copy.LinkName = entry.LinkName.Replace(placeholder, value, StringComparison.Ordinal);
            }

            if (entry is System.Formats.Tar.PosixTarEntry { EntryType: System.Formats.Tar.TarEntryType.CharacterDevice } device)
            {
                copy.DeviceMajor = device.DeviceMajor;
                copy.DeviceMinor = device.DeviceMinor;
            }

            entries.Add(copy);
        }

        return TestImage.Layer(tar =>
        {
            foreach (var entry in entries)
            {
                tar.WriteEntry(entry);
            }
        });
    }
}
