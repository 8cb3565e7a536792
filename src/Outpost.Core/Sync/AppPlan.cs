namespace Outpost.Core.Sync;

/// <summary>An app as the agent wants it or runs it: enough to decide whether to (re)load.</summary>
public sealed record AppVersion(string Name, long Generation, string Digest, string SpecJson);

/// <summary>Commands to turn the running set into the desired set (the iotedge "plan" split); a new generation is a replace even with the same spec (an undo).</summary>
public sealed record AppPlan(IReadOnlyList<AppVersion> Start, IReadOnlyList<AppVersion> Replace, IReadOnlyList<string> Stop)
{
    public bool IsEmpty => Start.Count == 0 && Replace.Count == 0 && Stop.Count == 0;

    public static AppPlan Compute(IReadOnlyCollection<AppVersion> desired, IReadOnlyCollection<AppVersion> running)
    {
        ArgumentNullException.ThrowIfNull(desired);
        ArgumentNullException.ThrowIfNull(running);
        var runningByName = running.ToDictionary(a => a.Name, StringComparer.Ordinal);
        var start = new List<AppVersion>();
        var replace = new List<AppVersion>();
        foreach (var app in desired)
        {
            if (!runningByName.TryGetValue(app.Name, out var current))
            {
                start.Add(app);
            }
            else if (current.Generation != app.Generation || current.Digest != app.Digest || current.SpecJson != app.SpecJson)
            {
                replace.Add(app);
            }
        }

        var desiredNames = desired.Select(a => a.Name).ToHashSet(StringComparer.Ordinal);
        var stop = running.Where(a => !desiredNames.Contains(a.Name)).Select(a => a.Name).ToList();
        return new AppPlan(start, replace, stop);
    }
}
