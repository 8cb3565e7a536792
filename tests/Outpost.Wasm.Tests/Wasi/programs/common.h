/*
 * Shared helpers for the WASI conformance programs (header only, so build.sh
 * compiles each programs/NAME.c on its own into NAME.wasm).
 *
 * Every program is a plain WASI command (main). When GATEWAY_INTERFACE is set
 * it is being run as a WAGI (CGI) app, and it first prints a CGI header; the
 * rest of its output is the same either way.
 */
#ifndef OUTPOST_WASI_COMMON_H
#define OUTPOST_WASI_COMMON_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Prints the CGI header when run under WAGI. Call first thing in main. */
static inline void wagi_header(void)
{
    if (getenv("GATEWAY_INTERFACE") != NULL)
        fputs("Content-Type: text/plain\n\n", stdout);
}

/*
 * errno as a symbolic name ("ENOENT"): strerror()'s text is libc-specific,
 * the name is not. Unknown values print as "E#<n>".
 */
static inline const char *errno_name(int e)
{
    switch (e) {
    case 0: return "ok";
    case E2BIG: return "E2BIG";
    case EACCES: return "EACCES";
    case EAGAIN: return "EAGAIN";
    case EBADF: return "EBADF";
    case EBUSY: return "EBUSY";
    case EEXIST: return "EEXIST";
    case EFAULT: return "EFAULT";
    case EFBIG: return "EFBIG";
    case EINTR: return "EINTR";
    case EINVAL: return "EINVAL";
    case EIO: return "EIO";
    case EISDIR: return "EISDIR";
    case ELOOP: return "ELOOP";
    case EMFILE: return "EMFILE";
    case EMLINK: return "EMLINK";
    case ENAMETOOLONG: return "ENAMETOOLONG";
    case ENFILE: return "ENFILE";
    case ENOENT: return "ENOENT";
    case ENOMEM: return "ENOMEM";
    case ENOSPC: return "ENOSPC";
    case ENOSYS: return "ENOSYS";
    case ENOTCAPABLE: return "ENOTCAPABLE";
    case ENOTDIR: return "ENOTDIR";
    case ENOTEMPTY: return "ENOTEMPTY";
    case ENOTSUP: return "ENOTSUP"; /* == EOPNOTSUPP in wasi-libc */
    case ENXIO: return "ENXIO";
    case EPERM: return "EPERM";
    case EPIPE: return "EPIPE";
    case EROFS: return "EROFS";
    case ESPIPE: return "ESPIPE";
    case EXDEV: return "EXDEV";
    default: {
        static char buf[24];
        snprintf(buf, sizeof buf, "E#%d", e);
        return buf;
    }
    }
}

/* Prints s with \n, \t, \\, \", NUL and other non-printables escaped (C style, \xNN). */
static inline void print_escaped(const char *s, size_t n)
{
    putchar('"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '\n': fputs("\\n", stdout); break;
        case '\t': fputs("\\t", stdout); break;
        case '\\': fputs("\\\\", stdout); break;
        case '"': fputs("\\\"", stdout); break;
        case 0: fputs("\\0", stdout); break;
        default:
            if (c < 0x20 || c >= 0x7f)
                printf("\\x%02x", c);
            else
                putchar(c);
        }
    }
    putchar('"');
}

static inline int cmp_strings(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

#endif
