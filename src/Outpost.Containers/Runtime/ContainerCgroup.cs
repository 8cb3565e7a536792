using System.Globalization;

namespace Outpost.Containers.Runtime;

/// <summary>
/// The cgroup a container runs in. On cgroup v1 Outpost makes the container's memory cgroup itself,
/// one level above the leaf runc makes and removes: the limit is set here, so the kernel's OOM kill
/// count is still readable after runc has cleaned up, and a kill for memory is reported as such.
/// On cgroup v2 runc sets the limit, and a kill for memory shows as a SIGKILL.
/// </summary>
internal sealed class ContainerCgroup
{
    private const string Root = "/sys/fs/cgroup";
    private readonly string _id;
    private readonly long? _memoryBytes;

    public ContainerCgroup(string id, long? memoryBytes)
    {
        _id = id;
        _memoryBytes = memoryBytes;
        IsV1 = Directory.Exists(Path.Combine(Root, "memory")) && File.Exists(Path.Combine(Root, "memory", "memory.limit_in_bytes"));
    }

    public bool IsV1 { get; }

    /// <summary>The cgroupsPath runc gets: a leaf under this container's own cgroup.</summary>
    public string RuncPath => $"/outpost/{_id}/c";

    /// <summary>The memory limit runc should set itself (only where this class cannot).</summary>
    public long? RuncMemoryBytes => IsV1 ? null : _memoryBytes;

    private string MemoryDirectory => Path.Combine(Root, "memory", "outpost", _id);

    /// <summary>Makes the memory cgroup with its limit, before runc starts the container in it.</summary>
    public void Prepare()
    {
        if (!IsV1)
        {
            return;
        }

        Directory.CreateDirectory(MemoryDirectory);
        if (_memoryBytes is { } limit)
        {
            var value = limit.ToString(CultureInfo.InvariantCulture);
            File.WriteAllText(Path.Combine(MemoryDirectory, "memory.limit_in_bytes"), value);
            var withSwap = Path.Combine(MemoryDirectory, "memory.memsw.limit_in_bytes");
            if (File.Exists(withSwap))
            {
                File.WriteAllText(withSwap, value);
            }
        }
    }

    /// <summary>How many processes the kernel killed for memory in this container since <see cref="Prepare"/>.</summary>
    public int OomKills()
    {
        if (!IsV1)
        {
            return 0;
        }

        try
        {
            foreach (var line in File.ReadLines(Path.Combine(MemoryDirectory, "memory.oom_control")))
            {
                if (line.StartsWith("oom_kill ", StringComparison.Ordinal))
                {
                    return int.Parse(line.AsSpan("oom_kill ".Length), CultureInfo.InvariantCulture);
                }
            }
        }
        catch (IOException)
        {
        }

        return 0;
    }

    /// <summary>Memory in use now (page cache included, as the limit counts it), or null when not running.</summary>
    public long? MemoryBytes()
    {
        var path = IsV1 ? Path.Combine(MemoryDirectory, "memory.usage_in_bytes") : Path.Combine(Root, "outpost", _id, "c", "memory.current");
        try
        {
            return long.Parse(File.ReadAllText(path).Trim(), CultureInfo.InvariantCulture);
        }
        catch (Exception e) when (e is IOException or FormatException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>Removes what is left of this container's cgroups (runc removes its leaf, not the parents made for it).</summary>
    public void Remove()
    {
        if (!Directory.Exists(Root))
        {
            return;
        }

        foreach (var controller in Directory.EnumerateDirectories(Root))
        {
            var mine = Path.Combine(controller, "outpost", _id);
            foreach (var dir in new[] { Path.Combine(mine, "c"), mine })
            {
                try
                {
                    // rmdir, not a recursive delete: cgroup directories hold pseudo-files that cannot be deleted.
                    if (Directory.Exists(dir))
                    {
                        Directory.Delete(dir);
                    }
                }
                catch (IOException)
                {
                    // Still busy (a process lingering): the next cleanup takes it.
                }
            }
        }
    }
}
