using System.Diagnostics;
using System.Globalization;
using System.Net;

namespace Outpost.Containers.Runtime;

/// <summary>
/// A container's network: its own namespace (<c>/run/netns/NAME</c>), joined to the node by a point-to-point
/// veth link. The gateway and the mesh reach the container's ports at Address; NodeAddress, the node's end of
/// the link, is the container's default route.
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed record ContainerAddress(string Namespace, int Block, IPAddress Address, IPAddress NodeAddress)
{
    public string NamespacePath => Path.Combine(ContainerNetwork.NamespaceDirectory, Namespace);
}

/// <summary>
/// Gives each container a network namespace of its own, so two containers may listen on the same
/// port: a veth pair links it to the node, one /30 of <see cref="Subnet"/> per container (node end .1,
/// container .2). Blocks are handed out through files in a host-wide directory, created exclusively,
/// so several agents on one machine never share one; an agent reclaims its own after a crash.
/// Containers reach the node's end of the link and nothing further unless the operator routes or
/// masquerades that subnet (docs/containers.md).
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public sealed class ContainerNetwork
{
    public const string NamespaceDirectory = "/run/netns";

    /// <summary>The blocks, one file per block in use: <c>owner id</c>.</summary>
    private readonly string _allocations;
    private readonly string _owner;
    private readonly uint _base;
    private readonly int _blocks;

    /// <param name="owner">Who allocates (an agent's data directory): its leftovers are its own to reclaim.</param>
    /// <param name="subnet">An IPv4 network of /16 to /28; default 10.213.0.0/16.</param>
    /// <param name="allocationDirectory">Default /run/outpost/net (cleared at boot with the namespaces).</param>
    public ContainerNetwork(string owner, string subnet = "10.213.0.0/16", string allocationDirectory = "/run/outpost/net")
    {
        ArgumentException.ThrowIfNullOrEmpty(owner);
        _owner = owner.Replace(' ', '_');
        if (!IPNetwork.TryParse(subnet, out var network) || network.BaseAddress.AddressFamily != System.Net.Sockets.AddressFamily.InterNetwork
            || network.PrefixLength is < 8 or > 28)
        {
            throw new ArgumentException($"container subnet '{subnet}' must be an IPv4 network of /8 to /28", nameof(subnet));
        }

        Subnet = network;
        _base = ToUInt(network.BaseAddress);
        _blocks = 1 << ((32 - network.PrefixLength) - 2);
        _allocations = allocationDirectory;
    }

    public IPNetwork Subnet { get; }

    /// <summary>Creates a namespace and link for <paramref name="containerId"/>.</summary>
    public async Task<ContainerAddress> CreateAsync(string containerId, CancellationToken cancellationToken = default)
    {
        var block = Allocate(containerId);
        var address = new ContainerAddress($"outpost-{block}", block, ToAddress(_base + ((uint)block * 4) + 2), ToAddress(_base + ((uint)block * 4) + 1));
        try
        {
            await DeleteLinkAsync(address, cancellationToken).ConfigureAwait(false); // a leftover of a crash
            await IpBatchAsync(null, $"""
                netns add {address.Namespace}
                link add {HostLink(block)} type veth peer name eth0 netns {address.Namespace}
                addr add {address.NodeAddress}/30 dev {HostLink(block)}
                link set {HostLink(block)} up
                """, cancellationToken).ConfigureAwait(false);
            await IpBatchAsync(address.Namespace, $"""
                addr add {address.Address}/30 dev eth0
                link set eth0 up
                link set lo up
                route add default via {address.NodeAddress}
                """, cancellationToken).ConfigureAwait(false);
            return address;
        }
        catch
        {
            await DeleteAsync(address, CancellationToken.None).ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>Removes a container's namespace and link and frees its block; safe to repeat.</summary>
    public async Task DeleteAsync(ContainerAddress address, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(address);
        await DeleteLinkAsync(address, cancellationToken).ConfigureAwait(false);
        File.Delete(Path.Combine(_allocations, address.Block.ToString(CultureInfo.InvariantCulture)));
    }

    /// <summary>Frees every block this owner holds that is not in <paramref name="keep"/> (container ids): the leftovers of a crash.</summary>
    public async Task ReclaimAsync(IReadOnlySet<string> keep, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(keep);
        if (!Directory.Exists(_allocations))
        {
            return;
        }

        foreach (var file in Directory.EnumerateFiles(_allocations))
        {
            if (!int.TryParse(Path.GetFileName(file), NumberStyles.None, CultureInfo.InvariantCulture, out var block))
            {
                continue;
            }

            string[] holder;
            try
            {
                holder = File.ReadAllText(file).Split(' ', 2);
            }
            catch (FileNotFoundException)
            {
                continue;
            }

            if (holder.Length == 2 && holder[0] == _owner && !keep.Contains(holder[1].Trim()))
            {
                await DeleteAsync(new ContainerAddress($"outpost-{block}", block, ToAddress(_base + ((uint)block * 4) + 2), ToAddress(_base + ((uint)block * 4) + 1)), cancellationToken).ConfigureAwait(false);
            }
        }
    }

    private int Allocate(string containerId)
    {
        Directory.CreateDirectory(_allocations);
        // Start at a place that depends on the id, so agents starting together rarely race for one file.
        var start = (int)((uint)string.GetHashCode(containerId, StringComparison.Ordinal) % (uint)_blocks);
        for (var i = 0; i < _blocks; i++)
        {
            var block = (start + i) % _blocks;
            try
            {
                using var file = new FileStream(Path.Combine(_allocations, block.ToString(CultureInfo.InvariantCulture)), FileMode.CreateNew, FileAccess.Write);
                file.Write(System.Text.Encoding.UTF8.GetBytes($"{_owner} {containerId}\n"));
                return block;
            }
            catch (IOException) when (File.Exists(Path.Combine(_allocations, block.ToString(CultureInfo.InvariantCulture))))
            {
                // Taken: try the next.
            }
        }

        throw new InvalidOperationException($"no free container address left in {Subnet} ({_blocks} containers)");
    }

    private static async Task DeleteLinkAsync(ContainerAddress address, CancellationToken cancellationToken)
    {
        // Deleting the node's end removes both ends at once; deleting the namespace alone frees
        // its link only later, in the background, and the name could not be used again at once.
        await RunIpAsync(["link", "del", HostLink(address.Block)], null, quiet: true, cancellationToken).ConfigureAwait(false);
        if (File.Exists(address.NamespacePath))
        {
            await RunIpAsync(["netns", "del", address.Namespace], null, quiet: true, cancellationToken).ConfigureAwait(false);
        }
    }

    private static string HostLink(int block) => $"opv{block}";

    private static Task IpBatchAsync(string? netns, string batch, CancellationToken cancellationToken) =>
        RunIpAsync(netns is null ? ["-batch", "-"] : ["-n", netns, "-batch", "-"], batch, quiet: false, cancellationToken);

    private static async Task RunIpAsync(string[] args, string? batch, bool quiet, CancellationToken cancellationToken)
    {
        var start = new ProcessStartInfo("ip", args) { RedirectStandardInput = true, RedirectStandardError = true, RedirectStandardOutput = true, UseShellExecute = false };
        using var process = Process.Start(start) ?? throw new InvalidOperationException("could not start ip (iproute2)");
        if (batch is not null)
        {
            await process.StandardInput.WriteAsync(batch.Replace("\r", "", StringComparison.Ordinal)).ConfigureAwait(false);
        }

        process.StandardInput.Close();
        var error = process.StandardError.ReadToEndAsync(cancellationToken);
        await process.StandardOutput.ReadToEndAsync(cancellationToken).ConfigureAwait(false);
        await process.WaitForExitAsync(cancellationToken).ConfigureAwait(false);
        if (process.ExitCode != 0 && !quiet)
        {
            throw new InvalidOperationException($"setting up the container's network failed (ip {string.Join(' ', args)}): {(await error.ConfigureAwait(false)).Trim()}");
        }
    }

    private static uint ToUInt(IPAddress address)
    {
        var bytes = address.GetAddressBytes();
        return ((uint)bytes[0] << 24) | ((uint)bytes[1] << 16) | ((uint)bytes[2] << 8) | bytes[3];
    }

    private static IPAddress ToAddress(uint value) => new([(byte)(value >> 24), (byte)(value >> 16), (byte)(value >> 8), (byte)value]);
}
