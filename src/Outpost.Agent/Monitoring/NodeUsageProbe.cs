using System.Globalization;
using Outpost.Protocol;

namespace Outpost.Agent.Monitoring;

/// <summary>
/// Samples the node's resource use: CPU and memory from /proc, the data dir's filesystem and
/// size, the agent's resident memory and CPU, and the gateway's open connections. CPU shares
/// cover the span since the previous sample. Where /proc is missing (not Linux) those read 0.
/// </summary>
public sealed class NodeUsageProbe(string dataDir)
{
    private readonly Lock _lock = new();
    private (long Busy, long Total)? _previousCpu;
    private (TimeSpan Cpu, long At)? _previousAgent;
    private long _connections;

    /// <summary>Open client connections to the gateway.</summary>
    public long OpenConnections => Interlocked.Read(ref _connections);

    public void ConnectionOpened() => Interlocked.Increment(ref _connections);

    public void ConnectionClosed() => Interlocked.Decrement(ref _connections);

    public NodeUsage Sample()
    {
        lock (_lock)
        {
            var (memoryTotal, memoryAvailable) = ReadMemory();
            var (diskTotal, diskFree) = ReadDisk();
            var usage = new NodeUsage
            {
                CpuRatio = CpuRatio(),
                CpuCount = Environment.ProcessorCount,
                MemoryTotalBytes = memoryTotal,
                MemoryUsedBytes = Math.Max(0, memoryTotal - memoryAvailable),
                DiskTotalBytes = diskTotal,
                DiskUsedBytes = Math.Max(0, diskTotal - diskFree),
                DataDirBytes = DirectorySize(dataDir),
                AgentRssBytes = Environment.WorkingSet,
                AgentCpuRatio = AgentCpuRatio(),
                OpenConnections = OpenConnections,
            };
            return usage;
        }
    }

    /// <summary>Busy share of all CPUs since the previous sample, from the first line of /proc/stat.</summary>
    private double CpuRatio()
    {
        var line = ReadFirstLine("/proc/stat");
        if (line is null || !line.StartsWith("cpu ", StringComparison.Ordinal))
        {
            return 0;
        }

        // user nice system idle iowait irq softirq steal ...
        var fields = line[4..].Split(' ', StringSplitOptions.RemoveEmptyEntries).Select(f => long.Parse(f, CultureInfo.InvariantCulture)).ToArray();
        var idle = fields[3] + (fields.Length > 4 ? fields[4] : 0);
        var total = fields.Take(Math.Min(fields.Length, 8)).Sum();
        var previous = _previousCpu;
        _previousCpu = (total - idle, total);
        if (previous is not { } p || total <= p.Total)
        {
            return 0;
        }

        return Math.Clamp((double)(total - idle - p.Busy) / (total - p.Total), 0, 1);
    }

    /// <summary>CPU time the agent used since the previous sample, as a share of one CPU.</summary>
    private double AgentCpuRatio()
    {
        var cpu = System.Diagnostics.Process.GetCurrentProcess().TotalProcessorTime;
        var now = System.Diagnostics.Stopwatch.GetTimestamp();
        var previous = _previousAgent;
        _previousAgent = (cpu, now);
        if (previous is not { } p)
        {
            return 0;
        }

        var wall = System.Diagnostics.Stopwatch.GetElapsedTime(p.At, now).TotalSeconds;
        return wall <= 0 ? 0 : Math.Max(0, (cpu - p.Cpu).TotalSeconds / wall);
    }

    private static (long Total, long Available) ReadMemory()
    {
        long total = 0, available = 0;
        try
        {
            foreach (var line in File.ReadLines("/proc/meminfo"))
            {
                if (line.StartsWith("MemTotal:", StringComparison.Ordinal))
                {
                    total = Kilobytes(line);
                }
                else if (line.StartsWith("MemAvailable:", StringComparison.Ordinal))
                {
                    available = Kilobytes(line);
                    break;
                }
            }
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }

        return (total, available);
    }

    private static long Kilobytes(string line) =>
        long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) * 1024;

    private (long Total, long Free) ReadDisk()
    {
        try
        {
            var drive = new DriveInfo(Path.GetFullPath(dataDir));
            return (drive.TotalSize, drive.AvailableFreeSpace);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or ArgumentException)
        {
            return (0, 0);
        }
    }

    private static long DirectorySize(string path)
    {
        try
        {
            return new DirectoryInfo(path).EnumerateFiles("*", SearchOption.AllDirectories).Sum(f =>
            {
                try
                {
                    return f.Length;
                }
                catch (FileNotFoundException)
                {
                    return 0; // removed while counting (a temp file, a WAL checkpoint)
                }
            });
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return 0;
        }
    }

    private static string? ReadFirstLine(string path)
    {
        try
        {
            using var reader = new StreamReader(path);
            return reader.ReadLine();
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }
}

/// <summary>What the node runs on, sent once per session in the Hello.</summary>
public static class NodeFacts
{
    public static NodeInfo Read(string gatewayUrl)
    {
        var info = new NodeInfo
        {
            OsImage = OsImage(),
            KernelVersion = FirstLine("/proc/sys/kernel/osrelease") ?? Environment.OSVersion.Version.ToString(),
            Architecture = System.Runtime.InteropServices.RuntimeInformation.OSArchitecture switch
            {
                System.Runtime.InteropServices.Architecture.X64 => "amd64",
                System.Runtime.InteropServices.Architecture.Arm64 => "arm64",
                System.Runtime.InteropServices.Architecture.Arm => "arm",
                var other => other.ToString().ToLowerInvariant(),
            },
            OperatingSystem = OperatingSystem.IsLinux() ? "linux" : Environment.OSVersion.Platform.ToString().ToLowerInvariant(),
            Hostname = Environment.MachineName,
            Cpus = Environment.ProcessorCount,
            MemoryBytes = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes,
        };
        if (Uri.TryCreate(gatewayUrl, UriKind.Absolute, out var gateway) && gateway.Host is not ("0.0.0.0" or "[::]" or "::"))
        {
            info.InternalIp = gateway.Host.Trim('[', ']');
        }

        return info;
    }

    private static string OsImage()
    {
        try
        {
            foreach (var line in File.ReadLines("/etc/os-release"))
            {
                if (line.StartsWith("PRETTY_NAME=", StringComparison.Ordinal))
                {
                    return line["PRETTY_NAME=".Length..].Trim('"');
                }
            }
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
        }

        return System.Runtime.InteropServices.RuntimeInformation.OSDescription;
    }

    private static string? FirstLine(string path)
    {
        try
        {
            return File.ReadLines(path).FirstOrDefault()?.Trim();
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }
}
