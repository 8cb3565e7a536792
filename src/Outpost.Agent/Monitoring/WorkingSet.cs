using System.Buffers.Binary;
using System.Globalization;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Outpost.Agent.Monitoring;

/// <summary>
/// Lets go of the code and read-only data that only the start ran. A process keeps every page of
/// its binary and libraries it has touched mapped, and the kernel maps the 64 KB around each one
/// (fault-around): building the host, reading config, joining, loading modules leave MB of code
/// mapped that an agent serving requests never runs again. Once settled, the agent drops its
/// mappings of those pages (madvise MADV_DONTNEED), and what it still runs maps back on its next
/// use, as a minor fault from the page cache. This is the working-set trim other systems do for
/// long-running processes (Windows' EmptyWorkingSet, Android's reclaim of cached apps).
/// </summary>
/// <remarks>
/// Only pages that are still the file's own are dropped: the executable's and shared libraries'
/// private, read-only mappings (never writable, so no page of them can hold a change), and of those
/// only the pages <c>/proc/self/pagemap</c> shows as file pages, which leaves out relocated data
/// (copy-on-write pages made private at load time). Files the process maps for its own data
/// (compiled modules, databases) are left alone.
/// </remarks>
internal static partial class WorkingSet
{
    private const int MadvDontNeed = 4;
    private const ulong PagePresent = 1UL << 63;
    private const ulong PageIsFile = 1UL << 61;

    /// <summary>A mapping of /proc/self/maps that is code or read-only data of a binary or library.</summary>
    internal readonly record struct Region(ulong Start, ulong End, string Path);

    /// <summary>Drops this process's mappings of its binary's and libraries' clean pages; returns the bytes dropped.</summary>
    public static long Trim()
    {
        if (!OperatingSystem.IsLinux())
        {
            return 0;
        }

        try
        {
            var executable = File.ResolveLinkTarget("/proc/self/exe", returnFinalTarget: true)?.FullName;
            var page = (ulong)Environment.SystemPageSize;
            using var pagemap = File.OpenHandle("/proc/self/pagemap");
            long dropped = 0;
            foreach (var region in Regions(File.ReadLines("/proc/self/maps"), executable))
            {
                dropped += Trim(region, page, pagemap);
            }

            return dropped;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or EntryPointNotFoundException)
        {
            return 0; // no /proc (a sandbox) or no madvise: nothing is dropped, nothing breaks
        }
    }

    /// <summary>The mappings that may be trimmed: private, read-only mappings of the executable and of shared libraries.</summary>
    internal static IEnumerable<Region> Regions(IEnumerable<string> maps, string? executable)
    {
        foreach (var line in maps)
        {
            // start-end perms offset dev inode path
            var fields = line.Split(' ', 6, StringSplitOptions.RemoveEmptyEntries);
            if (fields.Length < 6 || fields[1] is not ("r-xp" or "r--p"))
            {
                continue;
            }

            var path = fields[5].Trim();
            if (!path.StartsWith('/') || !(path == executable || IsSharedLibrary(path)))
            {
                continue;
            }

            var dash = fields[0].IndexOf('-', StringComparison.Ordinal);
            if (dash > 0
                && ulong.TryParse(fields[0].AsSpan(0, dash), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var start)
                && ulong.TryParse(fields[0].AsSpan(dash + 1), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var end)
                && end > start)
            {
                yield return new Region(start, end, path);
            }
        }
    }

    private static bool IsSharedLibrary(string path)
    {
        var name = Path.GetFileName(path);
        return name.EndsWith(".so", StringComparison.Ordinal) || name.Contains(".so.", StringComparison.Ordinal);
    }

    /// <summary>Drops the runs of present file pages in <paramref name="region"/>.</summary>
    private static long Trim(Region region, ulong page, SafeFileHandle pagemap)
    {
        var pages = (int)((region.End - region.Start) / page);
        var entries = new byte[pages * 8];
        var read = RandomAccess.Read(pagemap, entries, checked((long)(region.Start / page * 8)));
        pages = read / 8;
        long dropped = 0;
        var run = -1;
        for (var i = 0; i <= pages; i++)
        {
            var droppable = i < pages && (BinaryPrimitives.ReadUInt64LittleEndian(entries.AsSpan(i * 8)) & (PagePresent | PageIsFile)) == (PagePresent | PageIsFile);
            if (droppable && run < 0)
            {
                run = i;
            }
            else if (!droppable && run >= 0)
            {
                var length = (ulong)(i - run) * page;
                if (Madvise((nint)(region.Start + ((ulong)run * page)), (nuint)length, MadvDontNeed) == 0)
                {
                    dropped += (long)length;
                }

                run = -1;
            }
        }

        return dropped;
    }

    [LibraryImport("libc", EntryPoint = "madvise", SetLastError = true)]
    private static partial int Madvise(nint address, nuint length, int advice);
}
