/*
 * stdio.c - standard input, arguments and environment.
 *
 * Usage: stdio.wasm [ARGS...]    (reads all of stdin)
 *
 * Prints the byte count and 32-bit FNV-1a hash of stdin, then argc and each
 * argument from argv[1] on (argv[0] is left out: hosts name the program
 * differently), then the environment variables GREETING, EMPTY, EQUALS and
 * UNSET (UNSET is meant to be unset): "NAME=\"value\"" or "NAME unset".
 * Exit 0, or 1 if reading stdin failed.
 */
#include <unistd.h>

#include "common.h"

int main(int argc, char **argv)
{
    wagi_header();
    unsigned char buf[4096];
    unsigned long long total = 0;
    unsigned int hash = 2166136261u;
    int status = 0;
    for (;;) {
        ssize_t n = read(0, buf, sizeof buf);
        if (n < 0) {
            printf("read stdin: %s\n", errno_name(errno));
            status = 1;
            break;
        }
        if (n == 0)
            break;
        for (ssize_t i = 0; i < n; i++) {
            hash ^= buf[i];
            hash *= 16777619u;
        }
        total += (unsigned long long)n;
    }
    printf("stdin: %llu bytes, fnv1a=%08x\n", total, hash);
    printf("argc: %d\n", argc);
    for (int i = 1; i < argc; i++) {
        printf("argv[%d]: ", i);
        print_escaped(argv[i], strlen(argv[i]));
        putchar('\n');
    }
    static const char *const names[] = {"GREETING", "EMPTY", "EQUALS", "UNSET"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const char *v = getenv(names[i]);
        if (v == NULL) {
            printf("%s unset\n", names[i]);
        } else {
            printf("%s=", names[i]);
            print_escaped(v, strlen(v));
            putchar('\n');
        }
    }
    return status;
}
