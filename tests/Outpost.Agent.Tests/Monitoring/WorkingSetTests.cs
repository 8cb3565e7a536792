using System.Buffers.Binary;
using System.Linq.Expressions;
using Outpost.Agent.Monitoring;

namespace Outpost.Agent.Tests.Monitoring;

public sealed class WorkingSetTests
{
    [Fact]
    public void OnlyTheReadOnlyPrivateMappingsOfTheBinaryAndItsLibraries_AreTrimmed()
    {
        string[] maps =
        [
            "55d0a0000000-55d0a0400000 r--p 00000000 08:01 100 /usr/local/bin/outpost",
            "55d0a0400000-55d0a1400000 r-xp 00400000 08:01 100 /usr/local/bin/outpost",
            "55d0a1400000-55d0a1600000 r--p 01400000 08:01 100 /usr/local/bin/outpost",
            "55d0a1600000-55d0a1700000 rw-p 01600000 08:01 100 /usr/local/bin/outpost",
            "7f0000000000-7f0000100000 r-xp 00000000 08:01 200 /var/lib/outpost/lib/3f2a/libwasmtime.so",
            "7f0000100000-7f0000110000 r--p 00000000 08:01 201 /usr/lib/x86_64-linux-gnu/libssl.so.3",
            "7f0000110000-7f0000120000 r-xp 00000000 08:01 202 /var/lib/outpost/modules/ab12.cwasm",
            "7f0000120000-7f0000130000 r--s 00000000 08:01 203 /var/lib/outpost/state.db-shm",
            "7f0000130000-7f0000140000 r--p 00000000 08:01 204 /usr/lib/locale/C.utf8/LC_CTYPE",
            "7f0000140000-7f0000150000 r-xp 00000000 00:00 0 ",
            "7ffd00000000-7ffd00002000 r-xp 00000000 00:00 0                          [vdso]",
            "7f0000150000-7f0000160000 rwxp 00000000 08:01 205 /usr/lib/x86_64-linux-gnu/libc.so.6",
            "7f0000160000-7f0000170000 r-xp 00000000 08:01 206 /usr/lib/x86_64-linux-gnu/libc.so.6 (deleted)",
        ];

        var regions = WorkingSet.Regions(maps, "/usr/local/bin/outpost").ToList();

        Assert.Equal(
        [
            new(0x55d0a0000000, 0x55d0a0400000, "/usr/local/bin/outpost"),
            new(0x55d0a0400000, 0x55d0a1400000, "/usr/local/bin/outpost"),
            new(0x55d0a1400000, 0x55d0a1600000, "/usr/local/bin/outpost"),
            new(0x7f0000000000, 0x7f0000100000, "/var/lib/outpost/lib/3f2a/libwasmtime.so"),
            new(0x7f0000100000, 0x7f0000110000, "/usr/lib/x86_64-linux-gnu/libssl.so.3"),
            // Replaced on disk by an upgrade: the mapping still holds the old file's pages, which a fault reads back.
            new(0x7f0000160000, 0x7f0000170000, "/usr/lib/x86_64-linux-gnu/libc.so.6 (deleted)"),
        ], regions);
    }

    [Fact]
    public void ATrim_DropsCleanPagesOfThisProcess_LeavesItsRelocatedPagesInPlace_AndTheProcessRunsOn()
    {
        var executable = File.ResolveLinkTarget("/proc/self/exe", returnFinalTarget: true)?.FullName;
        var regions = WorkingSet.Regions(File.ReadLines("/proc/self/maps"), executable).ToList();
        Assert.Contains(regions, r => r.Path.EndsWith("libcoreclr.so", StringComparison.Ordinal));
        var privateBefore = PrivatePages(regions);
        Assert.NotEmpty(privateBefore); // the runtime's relocated read-only data (RELRO)

        var dropped = WorkingSet.Trim();

        Assert.True(dropped > 0, "nothing was dropped");
        // Pages made private at load time hold relocations the file does not: not one may go.
        var privateAfter = PrivatePages(regions);
        Assert.Empty(privateBefore.Except(privateAfter));
        // And the runtime still works: the JIT compiles, the collector walks every stack.
        var x = Expression.Parameter(typeof(int), "x");
        var compiled = Expression.Lambda<Func<int, int>>(Expression.Multiply(x, x), x).Compile();
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Forced, blocking: true, compacting: true);
        Assert.Equal(49, compiled(7));
    }

    /// <summary>The addresses of present pages that are no longer the file's (copy-on-write) in these regions.</summary>
    private static HashSet<ulong> PrivatePages(IEnumerable<WorkingSet.Region> regions)
    {
        var page = (ulong)Environment.SystemPageSize;
        using var pagemap = File.OpenHandle("/proc/self/pagemap");
        var found = new HashSet<ulong>();
        foreach (var region in regions)
        {
            var entries = new byte[(region.End - region.Start) / page * 8];
            var read = RandomAccess.Read(pagemap, entries, (long)(region.Start / page * 8));
            for (var i = 0; i + 8 <= read; i += 8)
            {
                var entry = BinaryPrimitives.ReadUInt64LittleEndian(entries.AsSpan(i));
                if ((entry & (1UL << 63)) != 0 && (entry & (1UL << 61)) == 0)
                {
                    found.Add(region.Start + ((ulong)i / 8 * page));
                }
            }
        }

        return found;
    }
}
