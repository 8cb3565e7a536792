namespace Outpost.Core.Security;

/// <summary>Files only their owner may read (keys, certificates, credentials), written whole or not at all.</summary>
public static class PrivateFile
{
    /// <summary>Writes through a temporary file made 0600 before it takes the final name.</summary>
    public static void Write(string path, string content, bool overwrite = true)
    {
        ArgumentNullException.ThrowIfNull(path);
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        var temp = path + ".tmp";
        File.WriteAllText(temp, content);
        if (!OperatingSystem.IsWindows())
        {
            File.SetUnixFileMode(temp, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        }

        File.Move(temp, path, overwrite);
    }
}
