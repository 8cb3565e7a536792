using Outpost.Wasm.Host;

namespace Outpost.Wasm.Components;

/// <summary>
/// Outpost's host functions for components, as the WIT package <c>outpost:edge@0.1.0</c>
/// (sdk/wit/outpost.wit): the same capabilities core modules import from module <c>outpost</c>,
/// gated the same way. A component importing an interface its app was not granted is refused at
/// apply and at load; each call checks the grant again.
/// </summary>
internal static unsafe class OutpostWit
{
    public const string Package = "outpost:edge";
    public const string Version = "0.1.0";

    private static readonly string[] Levels = ["debug", "info", "warn", "error"];

    public static List<WitInterface> Interfaces() =>
    [
        new WitInterface(Package, "log", Version) { Capability = "log" }
            .Func("log", (ref HostCall c) =>
            {
                var grant = Grant(ref c, "log");
                var level = Array.IndexOf(Levels, Values.CaseOf(c.Raw(0)));
                grant.Services.Log(grant.App, grant.Revision, Math.Max(level, 0), c.String(1));
            }),
        new WitInterface(Package, "config", Version) { Capability = "config" }
            .Func("get", (ref HostCall c) => Values.OptionalString(c.Result(), Grant(ref c, "config").Services.GetConfig(c.Run.Grant!.App, c.String(0)))),
        new WitInterface(Package, "secrets", Version) { Capability = "secrets" }
            .Func("get", (ref HostCall c) => Values.OptionalString(c.Result(), Grant(ref c, "secrets").Services.GetSecret(c.Run.Grant!.App, c.String(0)))),
        new WitInterface(Package, "kv", Version) { Capability = "kv" }
            .Func("get", (ref HostCall c) =>
            {
                var grant = Grant(ref c, "kv");
                if (grant.Services.KvGet(grant.App, c.String(0), c.String(1)) is not { } value)
                {
                    Values.None(c.Result());
                    return;
                }

                Val bytes = default;
                Values.Bytes(&bytes, value);
                Values.Some(c.Result(), &bytes);
            })
            .Func("set", (ref HostCall c) =>
            {
                var grant = Grant(ref c, "kv");
                var bucket = c.String(0);
                if (grant.Services.KvSet(grant.App, bucket, c.String(1), c.Bytes(2)))
                {
                    Values.Ok(c.Result());
                    return;
                }

                Error(c.Result(), $"bucket '{bucket}' is not writable on this node");
            })
            .Func("delete", (ref HostCall c) =>
            {
                var grant = Grant(ref c, "kv");
                var bucket = c.String(0);
                var deleted = grant.Services.KvDelete(grant.App, bucket, c.String(1));
                if (deleted < 0)
                {
                    Error(c.Result(), $"bucket '{bucket}' is not writable on this node");
                    return;
                }

                Val existed = default;
                Values.Bool(&existed, deleted == 1);
                Values.Ok(c.Result(), &existed);
            }),
        new WitInterface(Package, "publish", Version) { Capability = "publish" }
            .Func("publish", (ref HostCall c) =>
            {
                var grant = Grant(ref c, "publish");
                var topic = c.String(0);
                if (grant.Services.Publish(grant.App, topic, c.Bytes(1)))
                {
                    Values.Ok(c.Result());
                    return;
                }

                Error(c.Result(), $"the node's outbox refused the message to '{topic}' (over its quota)");
            }),
    ];

    /// <summary>The run's grant, checked to hold <paramref name="capability"/> (linking refused ungranted imports already).</summary>
    private static HostGrant Grant(ref HostCall c, string capability)
    {
        var grant = c.Run.Grant;
        return grant is not null && grant.Capabilities.Contains(capability)
            ? grant
            : throw new GuestTrapException($"{Package} called without capability '{capability}'");
    }

    private static void Error(Val* slot, string message)
    {
        Val text = default;
        Values.String(&text, message);
        Values.Err(slot, &text);
    }
}
