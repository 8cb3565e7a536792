using System.Net.Security;
using System.Reflection;
using System.Runtime.InteropServices;

namespace Outpost.Core.Net;

/// <summary>
/// Lets OpenSSL free a TLS connection's record buffers while the connection is idle.
/// </summary>
/// <remarks>
/// Unless told <c>SSL_MODE_RELEASE_BUFFERS</c>, OpenSSL keeps a read and a write buffer of ~17 KB each
/// for every connection's whole life; with it, a buffer is freed once it is empty and taken again for
/// the next record (nginx, HAProxy and Tor set it). .NET does not set it and has no API to, so this
/// sets it on the connection's <c>SSL*</c>, which <see cref="SslStream"/> keeps in a private field on
/// Linux. Most of a server's connections are idle nodes, and most of a node's direct wires sit
/// waiting: measured ~30 KB less per connection.
/// Anything unexpected (another TLS library, a runtime that moved the field, more than one libssl
/// in the process) leaves the connection as it was.
/// </remarks>
public static unsafe class TlsIdleBuffers
{
    private const int SslCtrlMode = 33; // SSL_CTRL_MODE: ORs larg into the mode, returns the mode
    private const nint ReleaseBuffers = 0x10; // SSL_MODE_RELEASE_BUFFERS

    private static readonly FieldInfo? ContextField =
        typeof(SslStream).GetField("_securityContext", BindingFlags.Instance | BindingFlags.NonPublic);

    private static readonly Lazy<(nint SslCtrl, string? Unavailable)> Native = new(Find);

    /// <summary>Why idle connections keep their buffers on this machine, or null when they do not.</summary>
    public static string? Unavailable => Native.Value.Unavailable;

    /// <summary>Sets the mode on an authenticated stream that no read or write is using yet (none: false).</summary>
    public static bool Release(SslStream? stream) => stream is not null && (Ctrl(stream, ReleaseBuffers) & ReleaseBuffers) != 0;

    /// <summary>The connection's OpenSSL mode bits, or -1 when they cannot be read.</summary>
    internal static long Mode(SslStream stream) => Ctrl(stream, 0);

    private static long Ctrl(SslStream stream, nint mode)
    {
        var sslCtrl = Native.Value.SslCtrl;
        if (sslCtrl == 0
            || ContextField?.GetValue(stream) is not SafeHandle ssl
            || ssl.GetType().FullName != "Microsoft.Win32.SafeHandles.SafeSslHandle"
            || ssl.IsInvalid)
        {
            return -1;
        }

        var added = false;
        try
        {
            ssl.DangerousAddRef(ref added);
            return ((delegate* unmanaged<nint, int, nint, nint, nint>)sslCtrl)(ssl.DangerousGetHandle(), SslCtrlMode, mode, 0);
        }
        catch (ObjectDisposedException)
        {
            return -1;
        }
        finally
        {
            if (added)
            {
                ssl.DangerousRelease();
            }
        }
    }

    /// <summary>SSL_ctrl of the libssl this process has loaded (the one .NET's TLS calls).</summary>
    private static (nint, string?) Find()
    {
        if (!OperatingSystem.IsLinux())
        {
            return (0, "TLS here is not OpenSSL");
        }

        if (ContextField is null)
        {
            return (0, "this .NET keeps no OpenSSL handle in SslStream");
        }

        string[] loaded;
        try
        {
            // .NET loads libssl on its first use of cryptography: by the time a server holds its
            // certificate the library is mapped, under whichever version .NET picked.
            loaded = File.ReadLines("/proc/self/maps")
                .Select(line => line.IndexOf('/') is var at and >= 0 ? line[at..] : "")
                .Where(path => Path.GetFileName(path).StartsWith("libssl.so", StringComparison.Ordinal))
                .Distinct(StringComparer.Ordinal)
                .ToArray();
        }
        catch (IOException e)
        {
            return (0, $"cannot read /proc/self/maps: {e.Message}");
        }

        if (loaded.Length != 1)
        {
            return (0, loaded.Length == 0 ? "no libssl is loaded" : $"{loaded.Length} libssl libraries are loaded");
        }

        return NativeLibrary.TryLoad(loaded[0], out var library) && NativeLibrary.TryGetExport(library, "SSL_ctrl", out var sslCtrl)
            ? (sslCtrl, null)
            : (0, $"{loaded[0]} has no SSL_ctrl");
    }
}
