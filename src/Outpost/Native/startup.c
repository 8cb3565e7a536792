/*
 * Linked into the release binary (src/Outpost/Outpost.csproj, target CompileStartupObject); runs
 * before the runtime does.
 *
 * NativeAOT keeps its type data compressed in the file and, before Main, expands it into the
 * zero-filled end of the data segment (.bss and .hydrated, ~10 MB in outpost): one page fault per
 * 4 KB page written, ~2,500 of them at every start of every role and client verb, and on a
 * virtual machine each fault is an exit to the hypervisor. Measured on the development VM: 10 MB
 * written page by page took 31-42 ms, the same 10 MB backed by transparent huge pages 1.2 ms.
 *
 * So the range is marked MADV_HUGEPAGE (the 2 MB-aligned part of it: the kernel backs those with
 * huge pages where it has them, as it does when transparent_hugepage is "always") and then
 * populated in one call (MADV_POPULATE_WRITE, Linux 5.14+), so the unaligned ends cost one system
 * call rather than a fault per page. Nearly all of the range is written by the runtime anyway
 * (9.7 of its 10.0 MB resident in a running agent), so this adds little memory. Each call is
 * advice: on a kernel without THP or without MADV_POPULATE_WRITE it fails and nothing changes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#ifndef MADV_HUGEPAGE
#define MADV_HUGEPAGE 14
#endif
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

/* Defined by the linker for an executable: the zero-filled part of the data segment. */
extern char __bss_start[];
extern char _end[];

__attribute__((constructor)) static void outpost_prefault_data(void)
{
    const uintptr_t huge = (uintptr_t)2 << 20;
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t start = ((uintptr_t)__bss_start + page - 1) & ~(page - 1);
    uintptr_t end = (uintptr_t)_end & ~(page - 1);
    if (end <= start)
    {
        return;
    }

    uintptr_t huge_start = (start + huge - 1) & ~(huge - 1);
    uintptr_t huge_end = end & ~(huge - 1);
    if (huge_end > huge_start)
    {
        madvise((void *)huge_start, huge_end - huge_start, MADV_HUGEPAGE);
    }

    madvise((void *)start, end - start, MADV_POPULATE_WRITE);
}

/*
 * The server's young-generation budget: 32 MB (hex, as the runtime reads DOTNET_GC* settings).
 *
 * The collector sizes generation 0 from the CPU cache it detects (about 5 MB here) and, with
 * background collection on, never above 6 MB. A server holding 10,000 node streams allocates
 * ~5 MB/s while idle, so it collected about once a second; and each young collection also scans
 * every old object written since the last one (each node's session, touched by its heartbeat): ~60
 * ms of pause each, 74 ms per second in all (bench/run.sh fleet, the server's outpost_server_gc_*
 * families). With 32 MB the same idle fleet collects 6-7 times less often, for about a third of the
 * pause; what it does to the server's memory is so far within the run-to-run noise (docs/ha.md).
 *
 * Only for `outpost server`, and only when DOTNET_GCgen0size is not set already: an agent's
 * allocation rate is a fraction of this and its footprint is what counts. The setting is only
 * read once, when the runtime starts, which is after this constructor and before Main, so this
 * is where it can differ by role.
 */
__attribute__((constructor)) static void outpost_server_gen0(int argc, char **argv, char **envp)
{
    (void)envp;
    if (argc > 1 && strcmp(argv[1], "server") == 0)
    {
        setenv("DOTNET_GCgen0size", "2000000", 0);
    }
}
