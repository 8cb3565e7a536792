namespace Outpost.Wasm.Wasi;

/// <summary>wasi_snapshot_preview1's errno values, and the mapping from Linux's.</summary>
internal static class Errno
{
    public const int Success = 0;
    public const int TooBig = 1;
    public const int Acces = 2;
    public const int Again = 6;
    public const int Badf = 8;
    public const int Busy = 10;
    public const int Exist = 20;
    public const int Fault = 21;
    public const int Fbig = 22;
    public const int Inval = 28;
    public const int Io = 29;
    public const int Isdir = 31;
    public const int Loop = 32;
    public const int Mfile = 33;
    public const int Nametoolong = 37;
    public const int Noent = 44;
    public const int Nospc = 51;
    public const int Nosys = 52;
    public const int Notdir = 54;
    public const int Notempty = 55;
    public const int Notsup = 58;
    public const int Perm = 63;
    public const int Rofs = 69;
    public const int Spipe = 70;
    public const int Xdev = 75;
    public const int Notcapable = 76;

    /// <summary>
    /// A Linux errno as WASI numbers it. EXDEV from a RESOLVE_BENEATH lookup is a path leading
    /// out of its preopen, which Wasmtime reports as PERM; callers that mean a real
    /// cross-device link pass <paramref name="exdevIsEscape"/> false.
    /// </summary>
    public static int FromLinux(int errno, bool exdevIsEscape = true) => errno switch
    {
        0 => Success,
        1 => Perm,
        2 => Noent,
        3 => 71, // srch
        4 => 27, // intr
        5 => Io,
        6 => 60, // nxio
        7 => TooBig,
        8 => 45, // noexec
        9 => Badf,
        10 => 12, // child
        11 => Again,
        12 => 48, // nomem
        13 => Acces,
        14 => Fault,
        16 => Busy,
        17 => Exist,
        18 => exdevIsEscape ? Perm : Xdev,
        19 => 43, // nodev
        20 => Notdir,
        21 => Isdir,
        22 => Inval,
        23 => 41, // nfile
        24 => Mfile,
        25 => 59, // notty
        26 => 74, // txtbsy
        27 => Fbig,
        28 => Nospc,
        29 => Spipe,
        30 => Rofs,
        31 => 34, // mlink
        32 => 64, // pipe
        34 => 68, // range
        35 => 16, // deadlk
        36 => Nametoolong,
        38 => Nosys,
        39 => Notempty,
        40 => Loop,
        61 => Noent, // ENODATA
        75 => 61, // overflow
        84 => 25, // ilseq
        95 => Notsup,
        110 => 73, // timedout
        116 => 72, // stale
        122 => 19, // dquot
        125 => 11, // canceled
        _ => Io,
    };
}
