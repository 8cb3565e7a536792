using System.Runtime.InteropServices;

namespace Outpost.Client;

/// <summary>
/// A client verb that dials a server pinned to the fleet's CA trusts that CA alone, so the system
/// trust store is of no use to it; yet on Linux every chain build (the one SslStream makes before
/// the pinned check runs included) first loads the whole store: every file of /etc/ssl/certs and
/// the bundle beside it, ~290 certificates parsed, 40 of a `get nodes`'s 54 ms. Pointing OpenSSL's
/// SSL_CERT_FILE and SSL_CERT_DIR at nothing, once, before the first TLS connect, leaves that
/// store empty for this process. Only the client verbs do this (the process dials nothing else);
/// `up`, the agent and the server keep the system store.
/// </summary>
internal static partial class PinnedTrust
{
    private static bool _done;

    public static void SkipSystemStore()
    {
        if (_done || !OperatingSystem.IsLinux())
        {
            return;
        }

        _done = true;
        try
        {
            // The native environment, which OpenSSL's getenv reads (Environment.SetEnvironmentVariable
            // changes only .NET's copy). Overwrite: a user's own SSL_CERT_* cannot matter to a pinned
            // connection either.
            _ = SetEnv("SSL_CERT_FILE", string.Empty, 1);
            _ = SetEnv("SSL_CERT_DIR", string.Empty, 1);
        }
        catch (EntryPointNotFoundException)
        {
            // No setenv in this libc: the store is loaded, which costs time, not correctness.
        }
    }

    [LibraryImport("libc", EntryPoint = "setenv", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int SetEnv(string name, string value, int overwrite);
}
