using System.Text;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Outpost.Core.Resources;
using Outpost.Core.Selectors;
using Outpost.Core.Store;

namespace Outpost.Server.Api;

/// <summary>
/// Watches (<c>?watch=true</c>): a chunked stream of <c>{"type": "ADDED|MODIFIED|DELETED",
/// "object": ...}</c> lines, the object a Table of one row when the client asked for tables
/// (kubectl get -w). The server looks again as soon as the store's revision moves or (for
/// nodes) a node's stream opens or closes, and every second besides (for nodes, only when a
/// lease says a state moved, or every 10 s), and sends what changed in what is shown: a
/// node's state changes with its lease, not only with stored writes, so each object's
/// fingerprint is its printed row (the columns shown without -o wide) and labels, not just its
/// resourceVersion. With no resourceVersion (or "0") the current objects come first as ADDED,
/// as Kubernetes does; with one, the first look is taken as what the client already has.
/// </summary>
public static class KubeWatch
{
    /// <summary>How often a watch looks when nothing was written (node states and usage move without writes).</summary>
    private static readonly TimeSpan Period = TimeSpan.FromSeconds(1);

    /// <summary>How often a watch of nodes looks at the whole fleet when no lease says a state moved.</summary>
    private static readonly TimeSpan FullLookEvery = TimeSpan.FromSeconds(10);

    /// <summary>The least time from one look to the next, however often things change.</summary>
    private static readonly TimeSpan MinGap = TimeSpan.FromMilliseconds(100);

    public static async Task RunAsync(HttpContext context, ResourceKind kind, LabelSelector selector, IControlPlaneStore store, ResourceView view, TimeProvider time,
        Func<List<JsonObject>, long, Task<JsonObject>> table, CancellationToken ct)
    {
        var asTable = KubeTable.Wanted(context.Request.Headers.Accept);
        string? name = null;
        foreach (var term in context.Request.Query["fieldSelector"].ToString().Split(',', StringSplitOptions.RemoveEmptyEntries))
        {
            if (term.StartsWith("metadata.name=", StringComparison.Ordinal))
            {
                name = term["metadata.name=".Length..];
            }
        }

        var rv = context.Request.Query["resourceVersion"].ToString();
        var timeout = int.TryParse(context.Request.Query["timeoutSeconds"], out var seconds) && seconds > 0 ? TimeSpan.FromSeconds(seconds) : TimeSpan.FromMinutes(30);
        context.Response.StatusCode = 200;
        context.Response.ContentType = asTable ? KubeTable.ContentType : "application/json";
        await context.Response.StartAsync(ct);

        using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
        stop.CancelAfter(timeout);
        var seen = new Dictionary<string, (string Fingerprint, JsonObject Object)>(StringComparer.Ordinal);
        var first = true;
        try
        {
            var leases = kind == ResourceKind.Node ? context.RequestServices.GetService<Sync.NodeLeases>() : null;
            while (!stop.IsCancellationRequested)
            {
                var streams = leases?.StreamChanged;
                var lookedAt = System.Diagnostics.Stopwatch.GetTimestamp();
                var page = await store.ListAsync(kind.Kind, stop.Token);
                var items = page.Items.Where(i => selector.Matches(i.Labels) && (name is null || i.Name == name)).Select(i => view.Render(i)).ToList();
                var printed = await table(items, page.Revision);
                var rows = printed["rows"]!.AsArray();
                // What is shown by default, less AGE (it changes by itself): the wide columns (usage,
                // last heartbeat) move all the time, and a fleet's watch would send every node every few seconds.
                var shown = printed["columnDefinitions"]!.AsArray()
                    .Select(c => (string?)c?["name"] != "Age" && ((int?)c?["priority"] ?? 0) == 0).ToList();
                var current = new Dictionary<string, (string, JsonObject)>(StringComparer.Ordinal);
                for (var i = 0; i < items.Count; i++)
                {
                    var cells = rows[i]!["cells"]!.AsArray().Select(c => c?.ToJsonString() ?? "").Where((_, index) => shown[index]);
                    current[(string)items[i]["metadata"]!["name"]!] = (string.Join('\u001f', cells) + (items[i]["metadata"]?["labels"]?.ToJsonString() ?? ""), items[i]);
                }

                var events = new List<(string Type, JsonObject Object)>();
                if (!first || rv is "" or "0")
                {
                    foreach (var (key, (fingerprint, item)) in current)
                    {
                        if (!seen.TryGetValue(key, out var before))
                        {
                            events.Add(("ADDED", item));
                        }
                        else if (before.Fingerprint != fingerprint)
                        {
                            events.Add(("MODIFIED", item));
                        }
                    }

                    events.AddRange(seen.Where(p => !current.ContainsKey(p.Key)).Select(p => ("DELETED", p.Value.Object)));
                }

                foreach (var (type, item) in events)
                {
                    // A copy: the object stays in `seen`, and a node has one parent (a DELETED line
                    // may send an object a line of the previous look already carried).
                    var body = asTable ? await table([item], page.Revision) : item.DeepClone();
                    var line = new JsonObject { ["type"] = type, ["object"] = body }.ToJsonString() + "\n";
                    await context.Response.Body.WriteAsync(Encoding.UTF8.GetBytes(line), stop.Token);
                }

                if (events.Count > 0)
                {
                    await context.Response.Body.FlushAsync(stop.Token);
                }

                seen = current;
                first = false;
                var states = leases is null ? null : seen.Keys.Select(view.LeaseState).ToArray();
                var fullLook = time.GetUtcNow();
                using (var wait = CancellationTokenSource.CreateLinkedTokenSource(stop.Token))
                {
                    var written = store.Changes.WaitAfterAsync(page.Revision, wait.Token);
                    // A node's stream opening or closing changes its state without a write.
                    var opened = streams ?? Task.Delay(Timeout.Infinite, wait.Token);
                    while (true)
                    {
                        var woke = await Task.WhenAny(written, Task.Delay(Period, time, wait.Token), opened);
                        // On a tick, nodes: a state moves with time alone (heartbeats missed, a lease run
                        // out), which their leases show without reading and rendering the whole fleet.
                        // Nodes with no stream since this server started are looked at every FullLookEvery.
                        if (woke != written && woke != opened && states is not null && !stop.IsCancellationRequested
                            && time.GetUtcNow() - fullLook < FullLookEvery && seen.Keys.Select(view.LeaseState).SequenceEqual(states))
                        {
                            continue;
                        }

                        break;
                    }

                    await wait.CancelAsync();
                }

                // A burst (a reconnect storm opens thousands of streams, a bulk apply writes many
                // objects) is one look, not one per change: each look reads the whole kind.
                // (Real time: it spares the CPU, whatever clock the fleet's states are judged by.)
                if (System.Diagnostics.Stopwatch.GetElapsedTime(lookedAt) is var since && since < MinGap)
                {
                    await Task.Delay(MinGap - since, stop.Token);
                }

                stop.Token.ThrowIfCancellationRequested();
            }
        }
        catch (OperationCanceledException)
        {
            // The client went away, or the watch's time is up: the stream ends and kubectl watches again.
        }
    }
}
