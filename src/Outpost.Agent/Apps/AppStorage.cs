using System.Collections.Concurrent;
using Outpost.Core.Resources;
using Outpost.Wasm.Wasi;

namespace Outpost.Agent.Apps;

/// <summary>
/// The directories a node keeps for its Wasm apps: each app's volumes under
/// <c>volumes/APP/VOLUME</c> (writable, held to the volume's size limit, kept across requests,
/// restarts and revisions, never shared between apps, removed with the app), and the
/// read-only content of spec.files under <c>files/HEX</c>, unpacked once per digest and shared.
/// </summary>
public sealed class AppStorage(string dataDir)
{
    private readonly ConcurrentDictionary<(string App, string Volume), VolumeQuota> _quotas = new();

    public string VolumesDir { get; } = Path.Combine(dataDir, "volumes");

    public string FilesDir { get; } = Path.Combine(dataDir, "files");

    public string VolumeDir(string app, string volume) => Path.Combine(VolumesDir, app, volume);

    /// <summary>Where the unpacked content of a spec.files digest lives.</summary>
    public string FilesPath(string digest) => Path.Combine(FilesDir, Digest.ToFileName(digest));

    /// <summary>The quota a volume is held to, shared by every revision of its app on this node.</summary>
    public VolumeQuota Quota(string app, VolumeSpec volume)
    {
        ArgumentNullException.ThrowIfNull(volume);
        var key = (app, volume.Name);
        var quota = _quotas.GetOrAdd(key, _ => VolumeQuota.ForDirectory(VolumeDir(app, volume.Name), volume.SizeLimit));
        if (quota.LimitBytes != volume.SizeLimit)
        {
            // A revision changed the limit: count afresh against the new one.
            quota = VolumeQuota.ForDirectory(VolumeDir(app, volume.Name), volume.SizeLimit);
            _quotas[key] = quota;
        }

        return quota;
    }

    /// <summary>Opens what a revision mounts (creating its volumes); null when it mounts nothing.</summary>
    public WasiMounts? Open(string app, ApplicationSpec spec)
    {
        ArgumentNullException.ThrowIfNull(spec);
        if (spec.Files.Count == 0 && spec.Volumes.Count == 0)
        {
            return null;
        }

        var mounts = new List<WasiMount>();
        foreach (var files in spec.Files)
        {
            var path = FilesPath(files.Digest ?? throw new AppLoadException($"spec.files at {files.MountPath} has no digest"));
            if (!Directory.Exists(path))
            {
                throw new AppLoadException($"the files for {files.MountPath} ({files.Digest}) are not on this node");
            }

            mounts.Add(new WasiMount(files.MountPath, path, ReadOnly: true));
        }

        foreach (var volume in spec.Volumes)
        {
            var path = VolumeDir(app, volume.Name);
            Directory.CreateDirectory(path);
            mounts.Add(new WasiMount(volume.MountPath, path, ReadOnly: false, Quota(app, volume)));
        }

        try
        {
            return WasiMounts.Open(mounts);
        }
        catch (Exception e) when (e is IOException or PlatformNotSupportedException)
        {
            throw new AppLoadException(e.Message);
        }
    }

    /// <summary>Deletes an app's volumes: it no longer runs on this node.</summary>
    public void Remove(string app)
    {
        foreach (var key in _quotas.Keys.Where(k => k.App == app))
        {
            _quotas.TryRemove(key, out _);
        }

        var dir = Path.Combine(VolumesDir, app);
        if (Directory.Exists(dir))
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
