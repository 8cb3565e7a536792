using System.Globalization;

namespace Outpost.Containers.Runtime;

/// <summary>
/// The cgroup a container runs in. On cgroup v1 Outpost makes the container's memory cgroup itself,
/// one level above the leaf runc makes and removes, sets the limit there and asks the kernel for an
/// OOM notification on it (an eventfd on memory.oom_control, read without blocking once the container
/// has exited): a kill for memory is reported as such even though runc has removed its leaf by then.
/// On cgroup v2 runc sets the limit, and a kill for memory shows as a SIGKILL.
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
internal sealed partial class ContainerCgroup : IDisposable
{
    private const string Root = "/sys/fs/cgroup";
    private readonly string _id;
    private readonly long? _memoryBytes;
    private int _oomEvents = -1;
    private Microsoft.Win32.SafeHandles.SafeFileHandle? _oomControl;

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

        CloseNotification();
        _oomEvents = EventFd(0, NonBlocking | CloseOnExec);
        if (_oomEvents >= 0)
        {
            _oomControl = File.OpenHandle(Path.Combine(MemoryDirectory, "memory.oom_control"));
            File.WriteAllText(Path.Combine(MemoryDirectory, "cgroup.event_control"),
                $"{_oomEvents} {_oomControl.DangerousGetHandle()}");
        }
    }

    /// <summary>True if the kernel ran out of memory in this container since <see cref="Prepare"/> (and killed in it).</summary>
    public bool OutOfMemory()
    {
        if (_oomEvents < 0)
        {
            return false;
        }

        ulong count = 0;
        unsafe
        {
            return Read(_oomEvents, &count, sizeof(ulong)) == sizeof(ulong) && count > 0;
        }
    }

    public void Dispose() => CloseNotification();

    private void CloseNotification()
    {
        if (_oomEvents >= 0)
        {
            _ = Close(_oomEvents);
            _oomEvents = -1;
        }

        _oomControl?.Dispose();
        _oomControl = null;
    }

    private const int NonBlocking = 0x800; // EFD_NONBLOCK (O_NONBLOCK)
    private const int CloseOnExec = 0x80000; // EFD_CLOEXEC (O_CLOEXEC)

    [System.Runtime.InteropServices.LibraryImport("libc", EntryPoint = "eventfd")]
    private static partial int EventFd(uint initial, int flags);

    [System.Runtime.InteropServices.LibraryImport("libc", EntryPoint = "read")]
    private static unsafe partial nint Read(int fd, void* buffer, nuint count);

    [System.Runtime.InteropServices.LibraryImport("libc", EntryPoint = "close")]
    private static partial int Close(int fd);

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
        CloseNotification();
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
