using System.Diagnostics;
using System.Globalization;

namespace Outpost.Bench;

/// <summary>
/// Makes the method order for the release binary (build/outpost.order.gz, by build/layout.sh):
/// which managed methods running processes of an unstripped build have touched, read from the
/// pages of the binary each process has resident (/proc/PID/pagemap). The processes must run
/// from a copy of the binary whose pages were not in the page cache and cannot be read ahead
/// (layout.sh uses a fresh loop mount with readahead off): then a page is resident only if the
/// process touched it. Every method with a byte on such a page is listed: the first process's,
/// in their order in the binary, then each further process's that are not listed yet.
/// </summary>
internal static class CodeLayout
{
    private const int Page = 4096;

    public static int Run(string symbols, string output, IReadOnlyList<(int Pid, string Path)> processes)
    {
        var (codeStart, codeEnd) = Section(symbols, "__managedcode");
        var methods = Methods(symbols, codeStart, codeEnd);
        var listed = new HashSet<string>(StringComparer.Ordinal);
        var order = new List<string>();
        foreach (var (pid, path) in processes)
        {
            var resident = ResidentPages(pid, path);
            var touched = methods.Where(m => Pages(m.Address, m.Size).Any(resident.Contains)).ToList();
            var added = touched.Where(m => listed.Add(m.Name)).Select(m => m.Name).ToList();
            order.AddRange(added);
            var codePages = resident.Count(p => p >= codeStart / Page && p < (codeEnd + Page - 1) / Page);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"pid {pid}: {codePages * Page / 1048576.0:F2} MB of managed code resident, {touched.Count} of {methods.Count} methods on those pages ({touched.Sum(m => (long)m.Size) / 1048576.0:F2} MB), {added.Count} not listed before"));
        }

        File.WriteAllLines(output, order);
        Console.WriteLine($"{order.Count} methods written to {output}");
        return 0;
    }

    private static IEnumerable<long> Pages(long address, long size) =>
        Enumerable.Range(0, (int)(((address + Math.Max(size, 1) - 1) / Page) - (address / Page) + 1)).Select(i => (address / Page) + i);

    /// <summary>The file pages of <paramref name="path"/> that process <paramref name="pid"/> has resident.</summary>
    private static HashSet<long> ResidentPages(int pid, string path)
    {
        var resident = new HashSet<long>();
        using var pagemap = File.OpenRead($"/proc/{pid}/pagemap");
        var entry = new byte[8];
        foreach (var line in File.ReadLines($"/proc/{pid}/maps"))
        {
            var fields = line.Split(' ', 6, StringSplitOptions.RemoveEmptyEntries);
            if (fields.Length < 6 || fields[5].Trim() != path)
            {
                continue;
            }

            var range = fields[0].Split('-');
            var start = Convert.ToInt64(range[0], 16);
            var end = Convert.ToInt64(range[1], 16);
            var offset = Convert.ToInt64(fields[2], 16);
            for (var page = start / Page; page < end / Page; page++)
            {
                pagemap.Position = page * 8;
                pagemap.ReadExactly(entry);
                if ((BitConverter.ToUInt64(entry) >> 63) != 0) // present
                {
                    resident.Add((offset / Page) + page - (start / Page));
                }
            }
        }

        if (resident.Count == 0)
        {
            throw new InvalidOperationException($"process {pid} has nothing of {path} resident: is it running that file?");
        }

        return resident;
    }

    /// <summary>A section's file range; in these executables code and read-only data sit at the same file offset as address.</summary>
    private static (long Start, long End) Section(string binary, string name)
    {
        foreach (var line in Tool("readelf", "-SW", binary))
        {
            var fields = line.Replace("[ ", "[", StringComparison.Ordinal).Split(' ', StringSplitOptions.RemoveEmptyEntries);
            var at = Array.IndexOf(fields, name);
            if (at >= 0 && fields.Length > at + 4)
            {
                var address = Convert.ToInt64(fields[at + 2], 16);
                var offset = Convert.ToInt64(fields[at + 3], 16);
                if (address != offset)
                {
                    throw new InvalidOperationException($"{name} is at address {address:x} but file offset {offset:x}");
                }

                return (offset, offset + Convert.ToInt64(fields[at + 4], 16));
            }
        }

        throw new InvalidOperationException($"{binary} has no section {name}");
    }

    private static List<(long Address, long Size, string Name)> Methods(string binary, long start, long end)
    {
        var methods = new List<(long, long, string)>();
        foreach (var line in Tool("nm", "-S", "--defined-only", binary))
        {
            var fields = line.Split(' ');
            if (fields.Length == 4 && fields[2] is "t" or "T")
            {
                var address = Convert.ToInt64(fields[0], 16);
                if (address >= start && address < end)
                {
                    methods.Add((address, Convert.ToInt64(fields[1], 16), fields[3]));
                }
            }
        }

        if (methods.Count == 0)
        {
            throw new InvalidOperationException($"{binary} has no symbols for its managed code: build it with -p:StripSymbols=false");
        }

        methods.Sort();
        return methods;
    }

    private static List<string> Tool(string name, params string[] arguments)
    {
        var start = new ProcessStartInfo(name) { RedirectStandardOutput = true };
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        using var process = Process.Start(start)!;
        var lines = new List<string>();
        while (process.StandardOutput.ReadLine() is { } line)
        {
            lines.Add(line);
        }

        process.WaitForExit();
        return process.ExitCode == 0 ? lines : throw new InvalidOperationException($"{name} exited with {process.ExitCode}");
    }
}
