/*
 * escape.c - attempts to reach files outside a writable preopen.
 *
 * Usage: escape.wasm [DIR [hostlinks]]   (DIR defaults to "/data"; a writable preopen)
 *
 * For a meaningful run the test puts a file "outside.txt" in the host
 * directory that CONTAINS the one preopened as DIR (its parent), so that any
 * escape would find something to open.
 *
 * With "hostlinks", it also follows symlinks that the TEST made on the host
 * side in DIR beforehand (a guest can't make most of them), and leaves them:
 *   hostabs -> /etc/passwd              opened as hostabs
 *   hostout -> ../outside.txt           opened as hostout
 *   hostup  -> ../..                    opened as hostup/etc/passwd
 *   hostetc -> /etc                     opened as hostetc/passwd
 *   hostnew -> /tmp/outpost-escape-proof.txt   opened with O_CREAT|O_WRONLY
 * All must be refused. (node:wasi 20 OPENS hostetc/passwd: uvwasi follows a
 * symlink to an outside directory when it is not the last path component.)
 *
 * Each attempt prints "refused" or "OPENED", never the errno (hosts differ:
 * ENOTCAPABLE, EPERM, ENOENT, ELOOP...). An attempt through a symlink is
 * "refused" whether the host refused to make the link (node:wasi refuses
 * absolute and escaping targets) or to follow it. Two controls that stay
 * inside the directory must print "OPENED". It removes everything it made,
 * and exits 0 when every escape was refused and both controls opened, 1
 * otherwise.
 */
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"

static int failures;
static const char *base;

static const char *P(const char *rel)
{
    static char bufs[4][512];
    static int next;
    char *b = bufs[next++ % 4];
    size_t n = strlen(base);
    snprintf(b, sizeof bufs[0], "%s%s%s", base, n > 0 && base[n - 1] == '/' ? "" : "/", rel);
    return b;
}

/* "what: refused|OPENED"; counts a failure when it is not what is expected. */
static void report(const char *what, int fd, int should_open)
{
    printf("%s: %s\n", what, fd >= 0 ? "OPENED" : "refused");
    if ((fd >= 0) != should_open)
        failures++;
    if (fd >= 0)
        close(fd);
}

static void try_open(const char *label, const char *path, int should_open)
{
    char what[256];
    snprintf(what, sizeof what, "open %s", label);
    report(what, open(path, O_RDONLY), should_open);
}

/* Makes the symlink DIR/link -> target, then opens DIR/through with flags. */
static void via_link(const char *link, const char *target, const char *through, int flags, int should_open)
{
    char what[256];
    snprintf(what, sizeof what, "%s %s (%s -> %s)", flags & O_CREAT ? "create" : "open", through, link, target);
    int made = symlink(target, P(link)) == 0;
    report(what, made ? open(P(through), flags, 0644) : -1, should_open);
    if (made)
        unlink(P(link));
}

int main(int argc, char **argv)
{
    wagi_header();
    base = argc > 1 ? argv[1] : "/data";
    printf("escape from %s\n", base);

    /* set-up (its results are not printed: a host may refuse to even make some links) */
    mkdir(P("sub"), 0755);
    int fd = open(P("inside.txt"), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
        write(fd, "inside\n", 7);
        close(fd);
    }

    try_open("../outside.txt", P("../outside.txt"), 0);
    try_open("/etc/passwd", "/etc/passwd", 0);
    try_open("sub/../../outside.txt", P("sub/../../outside.txt"), 0);
    via_link("abs", "/etc/passwd", "abs", O_RDONLY, 0);
    via_link("up", "../..", "up/etc/passwd", O_RDONLY, 0);
    via_link("dotdot", "..", "dotdot/outside.txt", O_RDONLY, 0);
    via_link("out", "../outside.txt", "out", O_RDONLY, 0);
    via_link("subout", "sub/../../outside.txt", "subout", O_RDONLY, 0);
    via_link("absnew", "/tmp/outpost-escape-proof.txt", "absnew", O_WRONLY | O_CREAT, 0);
    report("mkdir ../outpost-escape-dir", mkdir(P("../outpost-escape-dir"), 0755), 0);
    report("rename inside.txt ../outpost-escaped.txt",
           rename(P("inside.txt"), P("../outpost-escaped.txt")), 0);

    /* controls: these stay inside DIR and must open */
    try_open("sub/../inside.txt", P("sub/../inside.txt"), 1);
    via_link("in", "sub/../inside.txt", "in", O_RDONLY, 1);

    if (argc > 2 && strcmp(argv[2], "hostlinks") == 0) {
        try_open("hostabs (-> /etc/passwd)", P("hostabs"), 0);
        try_open("hostout (-> ../outside.txt)", P("hostout"), 0);
        try_open("hostup/etc/passwd (hostup -> ../..)", P("hostup/etc/passwd"), 0);
        try_open("hostetc/passwd (hostetc -> /etc)", P("hostetc/passwd"), 0);
        report("create hostnew (-> /tmp/outpost-escape-proof.txt)",
               open(P("hostnew"), O_WRONLY | O_CREAT, 0644), 0);
    }

    unlink(P("inside.txt"));
    rmdir(P("sub"));

    if (failures == 0)
        printf("escape: all ok\n");
    else
        printf("escape: %d unexpected\n", failures);
    return failures == 0 ? 0 : 1;
}
