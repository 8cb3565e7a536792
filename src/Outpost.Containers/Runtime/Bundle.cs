using System.Text;
using System.Text.Json;
using Outpost.Containers.Images;

namespace Outpost.Containers.Runtime;

/// <summary>How one container runs: its process, limits and where it lives.</summary>
public sealed record ContainerSpec
{
    /// <summary>The runc container id: unique on the machine.</summary>
    public required string Id { get; init; }

    public required string Hostname { get; init; }

    /// <summary>The process's argv, resolved from the image and the app (<see cref="ResolveArgs"/>).</summary>
    public required IReadOnlyList<string> Args { get; init; }

    public IReadOnlyList<string> Env { get; init; } = [];

    public string WorkingDir { get; init; } = "/";

    public uint Uid { get; init; }

    public uint Gid { get; init; }

    /// <summary>The memory cgroup's limit (no swap beyond it), if any.</summary>
    public long? MemoryBytes { get; init; }

    /// <summary>CPU time as a number of cores (0.5 = half of one), if limited.</summary>
    public double? Cpus { get; init; }

    /// <summary>At most this many processes and threads; default 1024.</summary>
    public int PidsLimit { get; init; } = 1024;

    /// <summary>The size of the writable scratch at /tmp (tmpfs, counted in the memory limit); default 64 MiB.</summary>
    public long ScratchBytes { get; init; } = 64L << 20;

    /// <summary>
    /// The argv from the app and the image, as Kubernetes combines them: <paramref name="command"/>
    /// replaces the image's Entrypoint (and drops its Cmd), <paramref name="args"/> replaces its Cmd.
    /// </summary>
    public static IReadOnlyList<string> ResolveArgs(ImageConfig image, IReadOnlyList<string> command, IReadOnlyList<string> args)
    {
        ArgumentNullException.ThrowIfNull(image);
        IReadOnlyList<string> entrypoint = command.Count > 0 ? command : image.Entrypoint;
        IReadOnlyList<string> cmd = args.Count > 0 ? args : command.Count > 0 ? [] : image.Cmd;
        var argv = entrypoint.Concat(cmd).ToArray();
        return argv.Length > 0 ? argv : throw new ImageException("nothing to run: the image has no Entrypoint or Cmd and the app gives no command");
    }
}

/// <summary>
/// Writes an OCI runtime bundle for runc: config.json plus the /etc files mounted into the container.
/// The defaults are containerd's: own PID, mount, IPC, UTS and network namespaces; the image's root
/// read-only with a tmpfs scratch at /tmp; no new privileges; containerd's default capabilities; a
/// seccomp filter refusing what Docker's default profile refuses; /proc's sensitive files masked.
/// </summary>
[System.Runtime.Versioning.SupportedOSPlatform("linux")]
public static class Bundle
{
    /// <summary>containerd's default capability set for a container.</summary>
    public static readonly IReadOnlyList<string> DefaultCapabilities =
    [
        "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID",
        "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
    ];

    /// <summary>Refused with EPERM: what Docker's default seccomp profile does not allow an unprivileged container.</summary>
    public static readonly IReadOnlyList<string> RefusedSyscalls =
    [
        "acct", "add_key", "bpf", "clock_adjtime", "clock_settime", "create_module", "delete_module", "finit_module",
        "fsconfig", "fsmount", "fsopen", "fspick", "get_kernel_syms", "get_mempolicy", "init_module", "ioperm", "iopl",
        "kcmp", "kexec_file_load", "kexec_load", "keyctl", "lookup_dcookie", "mbind", "mount", "mount_setattr", "move_mount",
        "move_pages", "name_to_handle_at", "nfsservctl", "open_by_handle_at", "open_tree", "perf_event_open", "pivot_root",
        "process_vm_readv", "process_vm_writev", "ptrace", "query_module", "quotactl", "quotactl_fd", "reboot", "request_key",
        "set_mempolicy", "setns", "settimeofday", "stime", "swapoff", "swapon", "syslog", "sysfs", "_sysctl", "umount",
        "umount2", "unshare", "uselib", "userfaultfd", "ustat", "vm86", "vm86old",
    ];

    /// <summary>The mount points runc needs in the root; made while unpacking, as the root is read-only afterwards.</summary>
    public static readonly IReadOnlyList<string> MountPoints = ["proc", "dev", "sys", "tmp", "run", "etc"];

    public static readonly IReadOnlyList<string> MountedFiles = ["etc/hosts", "etc/hostname", "etc/resolv.conf"];

    /// <summary>Writes <paramref name="directory"/>/config.json and the mounted /etc files.</summary>
    /// <remarks>The memory limit goes in only if <paramref name="spec"/> has one; runc's cgroup is <paramref name="cgroupsPath"/>.</remarks>
    public static void Write(string directory, string rootfs, ContainerSpec spec, ContainerAddress? network, string cgroupsPath)
    {
        ArgumentNullException.ThrowIfNull(spec);
        Directory.CreateDirectory(directory);
        File.WriteAllText(Path.Combine(directory, "hosts"),
            $"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{(network is null ? "" : $"{network.Address}\t{spec.Hostname}\n")}");
        File.WriteAllText(Path.Combine(directory, "hostname"), spec.Hostname + "\n");
        File.WriteAllText(Path.Combine(directory, "resolv.conf"), "# Outpost: containers have no DNS resolver of their own (docs/containers.md)\n");

        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true }))
        {
            json.WriteStartObject();
            json.WriteString("ociVersion", "1.0.2");
            WriteProcess(json, spec);
            json.WriteStartObject("root");
            json.WriteString("path", rootfs);
            json.WriteBoolean("readonly", true);
            json.WriteEndObject();
            json.WriteString("hostname", spec.Hostname);
            WriteMounts(json, directory, spec);
            WriteLinux(json, spec, network, cgroupsPath);
            json.WriteEndObject();
        }

        File.WriteAllBytes(Path.Combine(directory, "config.json"), buffer.ToArray());
    }

    private static void WriteProcess(Utf8JsonWriter json, ContainerSpec spec)
    {
        json.WriteStartObject("process");
        json.WriteBoolean("terminal", false);
        json.WriteStartObject("user");
        json.WriteNumber("uid", spec.Uid);
        json.WriteNumber("gid", spec.Gid);
        json.WriteEndObject();
        Strings(json, "args", spec.Args);
        Strings(json, "env", spec.Env);
        json.WriteString("cwd", spec.WorkingDir);
        json.WriteStartObject("capabilities");
        foreach (var set in new[] { "bounding", "effective", "permitted" })
        {
            Strings(json, set, DefaultCapabilities);
        }

        json.WriteEndObject();
        // No rlimits: the container inherits the agent's (a hard limit above the agent's own would refuse to start).
        json.WriteBoolean("noNewPrivileges", true);
        json.WriteEndObject();
    }

    private static void WriteMounts(Utf8JsonWriter json, string directory, ContainerSpec spec)
    {
        json.WriteStartArray("mounts");
        Mount(json, "/proc", "proc", "proc", []);
        Mount(json, "/dev", "tmpfs", "tmpfs", ["nosuid", "strictatime", "mode=755", "size=65536k"]);
        Mount(json, "/dev/pts", "devpts", "devpts", ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]);
        Mount(json, "/dev/shm", "tmpfs", "shm", ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]);
        Mount(json, "/dev/mqueue", "mqueue", "mqueue", ["nosuid", "noexec", "nodev"]);
        Mount(json, "/sys", "sysfs", "sysfs", ["nosuid", "noexec", "nodev", "ro"]);
        Mount(json, "/sys/fs/cgroup", "cgroup", "cgroup", ["nosuid", "noexec", "nodev", "relatime", "ro"]);
        Mount(json, "/tmp", "tmpfs", "tmpfs", ["nosuid", "nodev", "mode=1777", $"size={spec.ScratchBytes}"]);
        Mount(json, "/run", "tmpfs", "tmpfs", ["nosuid", "nodev", "mode=755", "size=16m"]);
        foreach (var file in MountedFiles)
        {
            Mount(json, "/" + file, null, Path.Combine(directory, Path.GetFileName(file)), ["rbind", "ro", "nosuid", "nodev", "noexec"]);
        }

        json.WriteEndArray();
    }

    private static void WriteLinux(Utf8JsonWriter json, ContainerSpec spec, ContainerAddress? network, string cgroupsPath)
    {
        json.WriteStartObject("linux");
        json.WriteString("cgroupsPath", cgroupsPath);
        json.WriteStartObject("resources");
        json.WriteStartArray("devices");
        json.WriteStartObject();
        json.WriteBoolean("allow", false);
        json.WriteString("access", "rwm");
        json.WriteEndObject();
        json.WriteEndArray();
        if (spec.MemoryBytes is { } memory)
        {
            json.WriteStartObject("memory");
            json.WriteNumber("limit", memory);
            json.WriteNumber("swap", memory);
            json.WriteEndObject();
        }

        if (spec.Cpus is { } cpus)
        {
            const long period = 100_000;
            json.WriteStartObject("cpu");
            json.WriteNumber("period", period);
            json.WriteNumber("quota", Math.Max(1000, (long)(cpus * period)));
            json.WriteEndObject();
        }

        json.WriteStartObject("pids");
        json.WriteNumber("limit", spec.PidsLimit);
        json.WriteEndObject();
        json.WriteEndObject();

        json.WriteStartArray("namespaces");
        foreach (var kind in new[] { "pid", "ipc", "uts", "mount" })
        {
            json.WriteStartObject();
            json.WriteString("type", kind);
            json.WriteEndObject();
        }

        json.WriteStartObject();
        json.WriteString("type", "network");
        if (network is not null)
        {
            json.WriteString("path", network.NamespacePath);
        }

        json.WriteEndObject();
        json.WriteEndArray();

        Strings(json, "maskedPaths",
        [
            "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
            "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
        ]);
        Strings(json, "readonlyPaths", ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]);
        WriteSeccomp(json);
        json.WriteEndObject();
    }

    private static void WriteSeccomp(Utf8JsonWriter json)
    {
        json.WriteStartObject("seccomp");
        json.WriteString("defaultAction", "SCMP_ACT_ALLOW");
        Strings(json, "architectures", System.Runtime.InteropServices.RuntimeInformation.OSArchitecture == System.Runtime.InteropServices.Architecture.Arm64
            ? ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
            : ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]);
        json.WriteStartArray("syscalls");
        json.WriteStartObject();
        Strings(json, "names", RefusedSyscalls);
        json.WriteString("action", "SCMP_ACT_ERRNO");
        json.WriteNumber("errnoRet", 1); // EPERM
        json.WriteEndObject();

        // clone3 cannot be filtered by its flags (they sit in memory): ENOSYS makes libc fall back to clone, which can.
        json.WriteStartObject();
        Strings(json, "names", ["clone3"]);
        json.WriteString("action", "SCMP_ACT_ERRNO");
        json.WriteNumber("errnoRet", 38); // ENOSYS
        json.WriteEndObject();

        // No new user namespace (the one namespace an unprivileged process may otherwise create).
        json.WriteStartObject();
        Strings(json, "names", ["clone"]);
        json.WriteString("action", "SCMP_ACT_ERRNO");
        json.WriteNumber("errnoRet", 1);
        json.WriteStartArray("args");
        json.WriteStartObject();
        json.WriteNumber("index", 0);
        json.WriteNumber("value", 0x10000000); // CLONE_NEWUSER
        json.WriteNumber("valueTwo", 0x10000000);
        json.WriteString("op", "SCMP_CMP_MASKED_EQ");
        json.WriteEndObject();
        json.WriteEndArray();
        json.WriteEndObject();
        json.WriteEndArray();
        json.WriteEndObject();
    }

    private static void Mount(Utf8JsonWriter json, string destination, string? type, string source, IReadOnlyList<string> options)
    {
        json.WriteStartObject();
        json.WriteString("destination", destination);
        if (type is not null)
        {
            json.WriteString("type", type);
        }

        json.WriteString("source", source);
        Strings(json, "options", options);
        json.WriteEndObject();
    }

    private static void Strings(Utf8JsonWriter json, string name, IEnumerable<string> values)
    {
        json.WriteStartArray(name);
        foreach (var value in values)
        {
            json.WriteStringValue(value);
        }

        json.WriteEndArray();
    }

    /// <summary>Reads "uid[:gid]" or "name[:group]" against the image's own /etc/passwd and /etc/group.</summary>
    public static (uint Uid, uint Gid) ResolveUser(string rootfs, string user)
    {
        ArgumentNullException.ThrowIfNull(user);
        if (user.Length == 0)
        {
            return (0, 0);
        }

        var parts = user.Split(':', 2);
        uint? gid = null;
        uint uid;
        if (uint.TryParse(parts[0], out var numeric))
        {
            uid = numeric;
        }
        else
        {
            var entry = Lookup(rootfs, "etc/passwd", parts[0]) ?? throw new ImageException($"user '{parts[0]}' is not in the image's /etc/passwd");
            uid = uint.Parse(entry[2], System.Globalization.CultureInfo.InvariantCulture);
            gid = uint.Parse(entry[3], System.Globalization.CultureInfo.InvariantCulture);
        }

        if (parts.Length == 2)
        {
            gid = uint.TryParse(parts[1], out var g) ? g
                : uint.Parse((Lookup(rootfs, "etc/group", parts[1]) ?? throw new ImageException($"group '{parts[1]}' is not in the image's /etc/group"))[2], System.Globalization.CultureInfo.InvariantCulture);
        }

        return (uid, gid ?? 0);
    }

    private static string[]? Lookup(string rootfs, string file, string name)
    {
        var path = Path.Combine(rootfs, file);
        // Only the image's own file: a symlink could point at the host's.
        if (new FileInfo(path).LinkTarget is not null || !File.Exists(path))
        {
            return null;
        }

        return File.ReadLines(path, Encoding.UTF8).Select(l => l.Split(':')).FirstOrDefault(f => f.Length >= 4 && f[0] == name);
    }
}
