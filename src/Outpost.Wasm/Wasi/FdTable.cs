namespace Outpost.Wasm.Wasi;

/// <summary>
/// One run's file descriptors above stdio: its preopens first (3, 4, …, in mount order, as
/// every WASI host numbers them), then what the guest opens, each taking the lowest free
/// number. What the guest leaves open is closed when the run ends.
/// </summary>
internal sealed class FdTable : IDisposable
{
    /// <summary>The most descriptors one run may hold open.</summary>
    public const int MaxOpen = 1024;

    private const int First = 3;
    private readonly List<OpenFile?> _slots = [];

    public FdTable(WasiMounts? mounts)
    {
        foreach (var preopen in mounts?.Preopens ?? [])
        {
            var rights = preopen.ReadOnly ? Rights.ReadOnlyDirectory : Rights.Directory;
            _slots.Add(new OpenFile(preopen.Fd, owned: false, preopen, WasiFileType.Directory, rights, Rights.All) { PreopenName = preopen.Name });
        }
    }

    public OpenFile? Get(int fd) => fd >= First && fd - First < _slots.Count ? _slots[fd - First] : null;

    /// <summary>The new descriptor's number, or -1 when the run already holds <see cref="MaxOpen"/>.</summary>
    public int Add(OpenFile file)
    {
        for (var i = 0; i < _slots.Count; i++)
        {
            if (_slots[i] is null)
            {
                _slots[i] = file;
                return i + First;
            }
        }

        if (_slots.Count >= MaxOpen)
        {
            return -1;
        }

        _slots.Add(file);
        return _slots.Count - 1 + First;
    }

    /// <summary>Takes the descriptor out of the table (closing it unless it is a preopen's shared one).</summary>
    public bool Close(int fd)
    {
        var file = Get(fd);
        if (file is null)
        {
            return false;
        }

        _slots[fd - First] = null;
        file.Release();
        return true;
    }

    /// <summary>fd_renumber: <paramref name="to"/> is closed and becomes what <paramref name="from"/> was.</summary>
    public bool Renumber(int from, int to)
    {
        var file = Get(from);
        var target = Get(to);
        if (file is null || target is null)
        {
            return false;
        }

        if (from != to)
        {
            target.Release();
            _slots[to - First] = file;
            _slots[from - First] = null;
        }

        return true;
    }

    public void Dispose()
    {
        foreach (var file in _slots)
        {
            file?.Release();
        }

        _slots.Clear();
    }
}

/// <summary>An open file or directory of a run.</summary>
internal sealed class OpenFile(int fd, bool owned, Preopen root, byte fileType, ulong rightsBase, ulong rightsInheriting)
{
    public int Fd { get; } = fd;

    /// <summary>The mount it was opened under: whether writes are allowed, and the volume's quota.</summary>
    public Preopen Root { get; } = root;

    public byte FileType { get; } = fileType;

    public ulong RightsBase { get; set; } = rightsBase;

    public ulong RightsInheriting { get; set; } = rightsInheriting;

    /// <summary>Set on a preopen: the name the guest sees it under.</summary>
    public byte[]? PreopenName { get; init; }

    public bool IsDirectory => FileType == WasiFileType.Directory;

    public bool Has(ulong right) => (RightsBase & right) == right;

    public void Release()
    {
        if (owned)
        {
            _ = Posix.Close(Fd);
        }
    }
}

internal static class WasiFileType
{
    public const byte Unknown = 0;
    public const byte BlockDevice = 1;
    public const byte CharacterDevice = 2;
    public const byte Directory = 3;
    public const byte RegularFile = 4;
    public const byte SocketStream = 6;
    public const byte SymbolicLink = 7;

    /// <summary>The file type of a stat's st_mode.</summary>
    public static byte FromMode(int mode) => (mode & 0xF000) switch
    {
        0x4000 => Directory,
        0x8000 => RegularFile,
        0xA000 => SymbolicLink,
        0x2000 => CharacterDevice,
        0x6000 => BlockDevice,
        0xC000 => SocketStream,
        _ => Unknown,
    };

    /// <summary>The file type of a getdents d_type.</summary>
    public static byte FromDirent(byte type) => type switch
    {
        4 => Directory,
        8 => RegularFile,
        10 => SymbolicLink,
        2 => CharacterDevice,
        6 => BlockDevice,
        12 => SocketStream,
        _ => Unknown,
    };
}

/// <summary>WASI rights bits.</summary>
internal static class Rights
{
    public const ulong FdDatasync = 1UL << 0;
    public const ulong FdRead = 1UL << 1;
    public const ulong FdSeek = 1UL << 2;
    public const ulong FdFdstatSetFlags = 1UL << 3;
    public const ulong FdSync = 1UL << 4;
    public const ulong FdTell = 1UL << 5;
    public const ulong FdWrite = 1UL << 6;
    public const ulong FdAdvise = 1UL << 7;
    public const ulong FdAllocate = 1UL << 8;
    public const ulong PathCreateDirectory = 1UL << 9;
    public const ulong PathCreateFile = 1UL << 10;
    public const ulong PathLinkSource = 1UL << 11;
    public const ulong PathLinkTarget = 1UL << 12;
    public const ulong PathOpen = 1UL << 13;
    public const ulong FdReaddir = 1UL << 14;
    public const ulong PathReadlink = 1UL << 15;
    public const ulong PathRenameSource = 1UL << 16;
    public const ulong PathRenameTarget = 1UL << 17;
    public const ulong PathFilestatGet = 1UL << 18;
    public const ulong PathFilestatSetSize = 1UL << 19;
    public const ulong PathFilestatSetTimes = 1UL << 20;
    public const ulong FdFilestatGet = 1UL << 21;
    public const ulong FdFilestatSetSize = 1UL << 22;
    public const ulong FdFilestatSetTimes = 1UL << 23;
    public const ulong PathSymlink = 1UL << 24;
    public const ulong PathRemoveDirectory = 1UL << 25;
    public const ulong PathUnlinkFile = 1UL << 26;
    public const ulong PollFdReadwrite = 1UL << 27;

    /// <summary>Every file and directory right (no socket ones): what a preopen passes on to what is opened under it.</summary>
    public const ulong All = (1UL << 28) - 1;

    /// <summary>What changes a file's content or size.</summary>
    public const ulong Writing = FdWrite | FdAllocate | FdFilestatSetSize;

    public const ulong Directory = FdFdstatSetFlags | FdSync | FdDatasync | FdAdvise | PathCreateDirectory | PathCreateFile
        | PathLinkSource | PathLinkTarget | PathOpen | FdReaddir | PathReadlink | PathRenameSource | PathRenameTarget
        | PathFilestatGet | PathFilestatSetSize | PathFilestatSetTimes | FdFilestatGet | FdFilestatSetTimes | PathSymlink
        | PathRemoveDirectory | PathUnlinkFile;

    public const ulong ReadOnlyDirectory = PathOpen | FdReaddir | PathReadlink | PathFilestatGet | FdFilestatGet | FdAdvise;
}
