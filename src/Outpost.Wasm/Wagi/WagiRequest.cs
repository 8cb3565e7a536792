namespace Outpost.Wasm.Wagi;

/// <summary>An HTTP request as a WAGI guest sees it.</summary>
public sealed record WagiRequest
{
    public required string Method { get; init; }

    /// <summary>The request path, unescaped as the gateway received it.</summary>
    public required string Path { get; init; }

    /// <summary>The query string without the leading '?'.</summary>
    public string Query { get; init; } = "";

    /// <summary>The app's route prefix that matched.</summary>
    public required string Route { get; init; }

    public IReadOnlyList<KeyValuePair<string, string>> Headers { get; init; } = [];

    public ReadOnlyMemory<byte> Body { get; init; }

    public string Host { get; init; } = "localhost";

    public int Port { get; init; } = 80;

    /// <summary>The client's address as text; from <see cref="RemoteIp"/> when that is given.</summary>
    public string RemoteAddress
    {
        get => field ?? RemoteIp?.ToString() ?? "";
        init;
    }

    /// <summary>The client's address, written into the guest's environment without a string per request.</summary>
    public System.Net.IPAddress? RemoteIp { get; init; }

    public string Scheme { get; init; } = "http";
}

/// <summary>The guest's answer: status, headers and body.</summary>
public sealed record WagiResponse(int Status, IReadOnlyList<KeyValuePair<string, string>> Headers, ReadOnlyMemory<byte> Body);
