using System.Text;
using Outpost.Wasm.Host;

namespace Outpost.Wasm.Tests.Host;

/// <summary>Host services in memory, recording what guests did.</summary>
internal sealed class FakeServices : IHostServices
{
    public Dictionary<(string, string), byte[]> Kv { get; } = [];

    public Dictionary<string, string> Config { get; } = [];

    public List<(string App, string Topic, string Payload)> Published { get; } = [];

    public List<(int Level, string Line)> Logs { get; } = [];

    public void Log(string app, long revision, int level, string message) => Logs.Add((level, $"{app}: {message}"));

    public string? GetConfig(string app, string key) => Config.TryGetValue(key, out var v) ? v : null;

    public string? GetSecret(string app, string key) => null;

    public byte[]? KvGet(string app, string bucket, string key) => Kv.TryGetValue((bucket, key), out var v) ? v : null;

    public bool KvSet(string app, string bucket, string key, ReadOnlySpan<byte> value)
    {
        Kv[(bucket, key)] = value.ToArray();
        return true;
    }

    public int KvDelete(string app, string bucket, string key) => Kv.Remove((bucket, key)) ? 1 : 0;

    /// <summary>Publish answers false, as a full outbox does.</summary>
    public bool RefusePublish { get; set; }

    public bool Publish(string app, string topic, ReadOnlySpan<byte> payload)
    {
        if (RefusePublish)
        {
            return false;
        }

        Published.Add((app, topic, Encoding.UTF8.GetString(payload)));
        return true;
    }

    public List<HttpOutRequest> Requests { get; } = [];

    public Func<HttpOutRequest, HttpOutResponse> Answer { get; set; } = _ => throw new HttpOutException("no answer set");

    public Action<TimeSpan>? Timeouts { get; set; }

    public HttpOutResponse HttpRequest(string app, HttpOutRequest request, TimeSpan timeout)
    {
        Timeouts?.Invoke(timeout);
        var response = Answer(request);
        Requests.Add(request);
        return response;
    }
}
