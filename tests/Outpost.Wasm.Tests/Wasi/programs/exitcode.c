/*
 * exitcode.c - the ways a command ends.
 *
 * Usage: exitcode.wasm [N | return [N] | trap | procexit [N] | _Exit [N]]
 *
 *   N            exit(N), after stdio is flushed      (no argument: exit(3))
 *   return N     main returns N                       (default 3)
 *   trap         __builtin_trap(): an `unreachable` trap, no exit code of its own
 *   procexit N   __wasi_proc_exit(N) directly          (default 4)
 *   _Exit N      _Exit(N)                              (default 5)
 *
 * It always first prints "exitcode: MODE N" to stdout and "exitcode: to stderr"
 * to stderr (both flushed, so they survive the paths that skip atexit/stdio).
 */
#include <wasi/api.h>

#include "common.h"

int main(int argc, char **argv)
{
    wagi_header();
    const char *mode = argc > 1 ? argv[1] : "3";
    const char *num = argc > 2 ? argv[2] : NULL;
    int code;
    if (strcmp(mode, "trap") == 0)
        code = -1;
    else if (strcmp(mode, "return") == 0)
        code = num ? atoi(num) : 3;
    else if (strcmp(mode, "procexit") == 0)
        code = num ? atoi(num) : 4;
    else if (strcmp(mode, "_Exit") == 0)
        code = num ? atoi(num) : 5;
    else {
        code = atoi(mode);
        mode = "exit";
    }
    if (code >= 0)
        printf("exitcode: %s %d\n", mode, code);
    else
        printf("exitcode: %s\n", mode);
    fflush(stdout);
    fputs("exitcode: to stderr\n", stderr);
    fflush(stderr);

    if (strcmp(mode, "trap") == 0)
        __builtin_trap();
    if (strcmp(mode, "return") == 0)
        return code;
    if (strcmp(mode, "procexit") == 0)
        __wasi_proc_exit((__wasi_exitcode_t)code);
    if (strcmp(mode, "_Exit") == 0)
        _Exit(code);
    exit(code);
}
