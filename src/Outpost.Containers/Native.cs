using System.Runtime.InteropServices;

namespace Outpost.Containers;

/// <summary>The few libc calls .NET has no API for: ownership and hard links (layers carry both).</summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
internal static partial class Native
{
    public static void ChangeOwner(string path, int uid, int gid, bool followLinks = true)
    {
        if ((followLinks ? Chown(path, uid, gid) : LChown(path, uid, gid)) != 0)
        {
            throw new IOException($"chown {uid}:{gid} '{path}' failed: errno {Marshal.GetLastPInvokeError()}");
        }
    }

    public static void HardLink(string existing, string link)
    {
        if (Link(existing, link) != 0)
        {
            throw new IOException($"link '{link}' -> '{existing}' failed: errno {Marshal.GetLastPInvokeError()}");
        }
    }

    [LibraryImport("libc", EntryPoint = "chown", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int Chown(string path, int uid, int gid);

    [LibraryImport("libc", EntryPoint = "lchown", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int LChown(string path, int uid, int gid);

    [LibraryImport("libc", EntryPoint = "link", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int Link(string existing, string link);
}
