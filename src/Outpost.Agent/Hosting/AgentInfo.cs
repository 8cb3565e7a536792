using System.Reflection;

namespace Outpost.Agent.Hosting;

internal static class AgentInfo
{
    public static string Version { get; } =
        typeof(AgentInfo).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion.Split('+')[0] ?? "0.0.0";
}

/// <summary>The gateway's bound URL, known once Kestrel has started.</summary>
public sealed class GatewayInfo
{
    public string Url { get; set; } = "";
}

/// <summary>Lets a background service end the agent with an error the command turns into an exit code.</summary>
public sealed class AgentLifetime(Microsoft.Extensions.Hosting.IHostApplicationLifetime lifetime)
{
    public string? FatalError { get; private set; }

    public void Fail(string message)
    {
        FatalError = message;
        lifetime.StopApplication();
    }
}
