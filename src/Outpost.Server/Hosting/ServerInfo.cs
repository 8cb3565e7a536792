using System.Reflection;

namespace Outpost.Server.Hosting;

internal static class ServerInfo
{
    public static string Version { get; } =
        typeof(ServerInfo).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion.Split('+')[0] ?? "0.0.0";
}
