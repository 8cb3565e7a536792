/*
 * readonly.c - reading a read-only preopened directory, and being refused writes to it.
 *
 * Usage: readonly.wasm [DIR]     (DIR defaults to "/assets"; a read-only preopen)
 *
 * The test prepares, in the host directory behind DIR, exactly:
 *   hello.txt         "hello from a mounted file\n"   (26 bytes)
 *   nested/deep.txt   "deep\n"                        (5 bytes)
 *
 * It prints both files, the whole tree (sorted, "." and ".." skipped), then
 * tries a few writes and prints only "refused" or "allowed" for each: hosts
 * differ on the errno (EROFS, EPERM, EACCES, ENOTCAPABLE, EBADF). A write
 * that is allowed is undone where it can be, and makes the exit code 1.
 */
#include <dirent.h>
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
    if (rel[0] == '\0')
        snprintf(b, sizeof bufs[0], "%s", base);
    else
        snprintf(b, sizeof bufs[0], "%s%s%s", base, n > 0 && base[n - 1] == '/' ? "" : "/", rel);
    return b;
}

static void show_file(const char *rel)
{
    char buf[256];
    int fd = open(P(rel), O_RDONLY);
    if (fd < 0) {
        printf("read %s: %s\n", rel, errno_name(errno));
        failures++;
        return;
    }
    ssize_t n = read(fd, buf, sizeof buf);
    int e = errno;
    close(fd);
    if (n < 0) {
        printf("read %s: %s\n", rel, errno_name(e));
        failures++;
        return;
    }
    printf("read %s: ", rel);
    print_escaped(buf, (size_t)n);
    putchar('\n');
}

/* Prints every entry under rel (a directory; "" = DIR itself), depth first, sorted. */
static void tree(const char *rel)
{
    DIR *d = opendir(P(rel));
    if (d == NULL) {
        printf("opendir %s: %s\n", rel[0] ? rel : ".", errno_name(errno));
        failures++;
        return;
    }
    char *names[256];
    int count = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && count < 256) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        names[count++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, (size_t)count, sizeof names[0], cmp_strings);
    for (int i = 0; i < count; i++) {
        char child[512];
        snprintf(child, sizeof child, "%s%s%s", rel, rel[0] ? "/" : "", names[i]);
        struct stat st;
        if (lstat(P(child), &st) != 0) {
            printf("  %s: %s\n", child, errno_name(errno));
            failures++;
        } else if (S_ISDIR(st.st_mode)) {
            printf("  %s/\n", child);
            tree(child);
        } else if (S_ISREG(st.st_mode)) {
            printf("  %s (%lld bytes)\n", child, (long long)st.st_size);
        } else {
            printf("  %s (other)\n", child);
        }
        free(names[i]);
    }
}

/* "what: refused|allowed"; an allowed write counts as a failure. */
static int attempt(const char *what, int rc)
{
    printf("%s: %s\n", what, rc < 0 ? "refused" : "allowed");
    if (rc >= 0)
        failures++;
    return rc;
}

int main(int argc, char **argv)
{
    wagi_header();
    base = argc > 1 ? argv[1] : "/assets";
    printf("readonly in %s\n", base);
    show_file("hello.txt");
    show_file("nested/deep.txt");
    printf("tree:\n");
    tree("");

    struct stat st;
    int fd = attempt("create new.txt", open(P("new.txt"), O_WRONLY | O_CREAT | O_EXCL, 0644));
    if (fd >= 0) {
        close(fd);
        unlink(P("new.txt"));
    }
    fd = attempt("open hello.txt for writing", open(P("hello.txt"), O_WRONLY));
    if (fd >= 0)
        close(fd);
    fd = attempt("open hello.txt for reading and writing", open(P("hello.txt"), O_RDWR));
    if (fd >= 0)
        close(fd);
    fd = attempt("open hello.txt for appending", open(P("hello.txt"), O_WRONLY | O_APPEND));
    if (fd >= 0)
        close(fd);
    if (attempt("mkdir newdir", mkdir(P("newdir"), 0755)) == 0)
        rmdir(P("newdir"));
    if (attempt("symlink newlink", symlink("hello.txt", P("newlink"))) == 0)
        unlink(P("newlink"));

    /* still intact */
    show_file("hello.txt");
    if (stat(P("hello.txt"), &st) == 0)
        printf("stat hello.txt: size=%lld\n", (long long)st.st_size);

    if (failures == 0)
        printf("readonly: all ok\n");
    else
        printf("readonly: %d unexpected\n", failures);
    return failures == 0 ? 0 : 1;
}
