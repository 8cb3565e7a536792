using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace Outpost.Native;

/// <summary>
/// Gives back the part of the native binary that the runtime reads once, at start, and never
/// again. NativeAOT keeps its type data compressed in the file ("dehydrated", ~4.7 MB in
/// outpost) and expands it into writable memory before Main runs; the compressed copy stays
/// mapped and counted in the process's resident memory for as long as the process lives. A
/// long-running role (server, agent) asks the kernel to reclaim those pages once it has started
/// (madvise MADV_PAGEOUT, then MADV_DONTNEED for pages another process still maps). They are clean pages of a
/// read-only file mapping: if anything did read them again, the kernel would read them from the
/// file again, so nothing can be lost. The JIT build has no such data and does nothing.
/// </summary>
/// <remarks>
/// The data is found the way the runtime finds it: the ELF section <c>__modules</c> holds
/// pointers to each module's ReadyToRun header ("RTR"), whose section table has an entry for the
/// dehydrated data (section 207). Every step is checked (ELF magic, header signature, entry size,
/// the range inside a read-only loadable segment of the executable); anything unexpected, as a
/// future runtime might lay out, leaves the memory alone.
/// </remarks>
internal static partial class StartupImage
{
    /// <summary>ReadyToRunSectionType.DehydratedData in NativeAOT's module headers.</summary>
    internal const int DehydratedDataSection = 207;

    private const uint ReadyToRunSignature = 0x00525452; // "RTR\0"
    private const int MadvDontNeed = 4;
    private const int MadvPageOut = 21;
    private static int _released;

    /// <summary>A range of the image, in the process's addresses.</summary>
    internal readonly record struct Range(ulong Start, ulong End)
    {
        public ulong Length => End - Start;
    }

    /// <summary>
    /// Reclaims the start-up-only pages of this process's image, once; returns the bytes given
    /// back (0 for the JIT build, off Linux, or when the image is not laid out as expected).
    /// </summary>
    public static long Release()
    {
        if (RuntimeFeature.IsDynamicCodeSupported || !OperatingSystem.IsLinux() || Interlocked.Exchange(ref _released, 1) != 0)
        {
            return 0;
        }

        try
        {
            if (Locate(Environment.ProcessId, ReadSelf) is not { } range)
            {
                return 0;
            }

            var page = (ulong)Environment.SystemPageSize;
            var from = (range.Start + page - 1) / page * page;
            var to = range.End / page * page;
            if (to <= from)
            {
                return 0;
            }

            // PAGEOUT frees the pages no other process maps, but leaves shared ones mapped (another
            // outpost process on the node, starting at the same moment): DONTNEED then unmaps those
            // from this one (the page cache keeps them for the other). Neither loses anything: no
            // page of a read-only mapping was ever written.
            var length = (nuint)(to - from);
            var pagedOut = Madvise((nint)from, length, MadvPageOut) == 0;
            var dropped = Madvise((nint)from, length, MadvDontNeed) == 0;
            return pagedOut || dropped ? (long)length : 0;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or FormatException or ArgumentException or OverflowException or InvalidOperationException or EntryPointNotFoundException)
        {
            return 0;
        }
    }

    /// <summary>
    /// Where process <paramref name="pid"/> keeps the dehydrated data its runtime read at start,
    /// or null when it has none or it cannot be found with certainty. <paramref name="read"/>
    /// reads the process's memory (the tests read another process's through /proc/PID/mem).
    /// </summary>
    internal static Range? Locate(int pid, Func<ulong, int, byte[]> read)
    {
        var elf = Elf.Read($"/proc/{pid}/exe");
        if (elf is null || elf.Modules is not { } modules || LoadBias(pid, elf) is not { } bias)
        {
            return null;
        }

        var pointers = read(bias + modules.Address, checked((int)modules.Size));
        for (var i = 0; i + 8 <= pointers.Length; i += 8)
        {
            var header = BinaryPrimitives.ReadUInt64LittleEndian(pointers.AsSpan(i));
            if (header > bias && elf.InSegment(header - bias, header - bias + 16) && DehydratedData(header, read) is { } range
                && range.Start > bias && elf.InReadOnlySegment(range.Start - bias, range.End - bias))
            {
                return range;
            }
        }

        return null;
    }

    /// <summary>The dehydrated-data entry of the ReadyToRun header at <paramref name="header"/>.</summary>
    private static Range? DehydratedData(ulong header, Func<ulong, int, byte[]> read)
    {
        // uint Signature; ushort Major, Minor; uint Flags; ushort NumberOfSections; byte EntrySize; byte EntryType.
        var fixedPart = read(header, 16);
        if (BinaryPrimitives.ReadUInt32LittleEndian(fixedPart) != ReadyToRunSignature)
        {
            return null;
        }

        int sections = BinaryPrimitives.ReadUInt16LittleEndian(fixedPart.AsSpan(12));
        int entrySize = fixedPart[14];
        if (entrySize is not (16 or 24) || sections is 0 or > 1024)
        {
            return null;
        }

        var table = read(header + 16, sections * entrySize);
        for (var i = 0; i < sections; i++)
        {
            var entry = table.AsSpan(i * entrySize, entrySize);
            if (BinaryPrimitives.ReadInt32LittleEndian(entry) != DehydratedDataSection)
            {
                continue;
            }

            // 24 bytes: id, flags, start, end. 16 bytes: id, length, start.
            var start = BinaryPrimitives.ReadUInt64LittleEndian(entry[8..]);
            var end = entrySize == 24 ? BinaryPrimitives.ReadUInt64LittleEndian(entry[16..]) : start + BinaryPrimitives.ReadUInt32LittleEndian(entry[4..]);
            return end > start ? new Range(start, end) : null;
        }

        return null;
    }

    /// <summary>Where the executable's first loadable segment (file offset 0) is mapped in process <paramref name="pid"/>.</summary>
    private static ulong? LoadBias(int pid, Elf elf)
    {
        var exe = File.ResolveLinkTarget($"/proc/{pid}/exe", returnFinalTarget: false)?.FullName;
        foreach (var line in File.ReadLines($"/proc/{pid}/maps"))
        {
            // start-end perms offset dev inode path
            var fields = line.Split(' ', 6, StringSplitOptions.RemoveEmptyEntries);
            if (fields.Length == 6 && fields[2] == "00000000" && fields[5].Trim() is var path && (path == exe || path == exe + " (deleted)"))
            {
                var start = Convert.ToUInt64(fields[0][..fields[0].IndexOf('-', StringComparison.Ordinal)], 16);
                return start - elf.FirstSegmentAddress;
            }
        }

        return null;
    }

    private static byte[] ReadSelf(ulong address, int length)
    {
        var bytes = new byte[length];
        Marshal.Copy((nint)address, bytes, 0, length);
        return bytes;
    }

    [LibraryImport("libc", EntryPoint = "madvise", SetLastError = true)]
    private static partial int Madvise(nint address, nuint length, int advice);

    /// <summary>What is needed of an ELF64 little-endian executable: its loadable segments and the <c>__modules</c> section.</summary>
    private sealed class Elf
    {
        private readonly List<(ulong Address, ulong Size, bool Writable)> _segments = [];

        public (ulong Address, ulong Size)? Modules { get; private set; }

        /// <summary>The address the segment at file offset 0 is linked at (0 for a position-independent executable).</summary>
        public ulong FirstSegmentAddress { get; private set; }

        public bool InReadOnlySegment(ulong start, ulong end) =>
            _segments.Any(s => !s.Writable && start >= s.Address && end <= s.Address + s.Size);

        public bool InSegment(ulong start, ulong end) =>
            _segments.Any(s => start >= s.Address && end <= s.Address + s.Size);

        public static Elf? Read(string path)
        {
            using var file = File.OpenRead(path);
            var header = ReadAt(file, 0, 64);
            if (!header.AsSpan(0, 4).SequenceEqual("\u007fELF"u8) || header[4] != 2 || header[5] != 1)
            {
                return null; // not ELF64 little-endian
            }

            var elf = new Elf();
            var phoff = BinaryPrimitives.ReadUInt64LittleEndian(header.AsSpan(0x20));
            var shoff = BinaryPrimitives.ReadUInt64LittleEndian(header.AsSpan(0x28));
            int phentsize = BinaryPrimitives.ReadUInt16LittleEndian(header.AsSpan(0x36));
            int phnum = BinaryPrimitives.ReadUInt16LittleEndian(header.AsSpan(0x38));
            int shentsize = BinaryPrimitives.ReadUInt16LittleEndian(header.AsSpan(0x3a));
            int shnum = BinaryPrimitives.ReadUInt16LittleEndian(header.AsSpan(0x3c));
            int shstrndx = BinaryPrimitives.ReadUInt16LittleEndian(header.AsSpan(0x3e));
            if (phentsize < 56 || shentsize < 64 || shstrndx >= shnum)
            {
                return null;
            }

            var programHeaders = ReadAt(file, phoff, phnum * phentsize);
            var first = true;
            for (var i = 0; i < phnum; i++)
            {
                var ph = programHeaders.AsSpan(i * phentsize);
                if (BinaryPrimitives.ReadUInt32LittleEndian(ph) != 1)
                {
                    continue; // PT_LOAD only
                }

                var flags = BinaryPrimitives.ReadUInt32LittleEndian(ph[4..]);
                var offset = BinaryPrimitives.ReadUInt64LittleEndian(ph[8..]);
                var address = BinaryPrimitives.ReadUInt64LittleEndian(ph[16..]);
                var memorySize = BinaryPrimitives.ReadUInt64LittleEndian(ph[40..]);
                elf._segments.Add((address, memorySize, (flags & 2) != 0));
                if (first)
                {
                    if (offset != 0)
                    {
                        return null;
                    }

                    elf.FirstSegmentAddress = address;
                    first = false;
                }
            }

            var sectionHeaders = ReadAt(file, shoff, shnum * shentsize);
            var names = sectionHeaders.AsSpan(shstrndx * shentsize);
            var nameTable = ReadAt(file, BinaryPrimitives.ReadUInt64LittleEndian(names[24..]), checked((int)BinaryPrimitives.ReadUInt64LittleEndian(names[32..])));
            for (var i = 0; i < shnum; i++)
            {
                var sh = sectionHeaders.AsSpan(i * shentsize);
                var name = (int)BinaryPrimitives.ReadUInt32LittleEndian(sh);
                if (name < nameTable.Length && nameTable.AsSpan(name).StartsWith("__modules\0"u8))
                {
                    var size = BinaryPrimitives.ReadUInt64LittleEndian(sh[32..]);
                    elf.Modules = size is > 0 and <= 4096 ? (BinaryPrimitives.ReadUInt64LittleEndian(sh[16..]), size) : null;
                }
            }

            return elf;
        }

        private static byte[] ReadAt(FileStream file, ulong offset, int length)
        {
            var bytes = new byte[length];
            file.Position = checked((long)offset);
            file.ReadExactly(bytes);
            return bytes;
        }
    }
}
