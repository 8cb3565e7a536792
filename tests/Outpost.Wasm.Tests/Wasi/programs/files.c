/*
 * files.c - file system calls inside a writable preopened directory.
 *
 * Usage: files.wasm [DIR]     (DIR defaults to "/data"; it must be a writable preopen)
 *
 * Everything it makes lives under DIR/work and is removed again at the end,
 * except DIR/kept.txt, a counter ("runs=N\n") that each run reads and bumps:
 * a second run over the same directory shows that files persist.
 *
 * One line per step, "STEP: ok" or "STEP: ENAME" (errno as its symbolic
 * name). A step whose result is not the expected one gets " (expected X)"
 * and makes the exit code 1. Nothing printed depends on the host's clock,
 * inode numbers or directory order (listings are sorted; "." and ".." are
 * skipped, since some hosts return them and others don't).
 */
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"

static int failures;
static const char *base;

/* DIR/rel, in one of a few rotating buffers (so two can be used in one call). */
static const char *P(const char *rel)
{
    static char bufs[4][512];
    static int next;
    char *b = bufs[next++ % 4];
    size_t n = strlen(base);
    snprintf(b, sizeof bufs[0], "%s%s%s", base, n > 0 && base[n - 1] == '/' ? "" : "/", rel);
    return b;
}

/* "what: ok|ENAME"; counts a failure when the outcome is not `want` (0 = success). */
static int check(const char *what, int rc, int want)
{
    int e = rc < 0 ? errno : 0;
    printf("%s: %s", what, errno_name(e));
    if (e != want) {
        printf(" (expected %s)", errno_name(want));
        failures++;
    }
    putchar('\n');
    return e;
}

/* Like check() for calls that return a count: prints the count, or the errno name. */
static void check_count(const char *what, long long got, long long want)
{
    if (got < 0)
        printf("%s: %s", what, errno_name(errno));
    else
        printf("%s: %lld", what, got);
    if (got != want) {
        printf(" (expected %lld)", want);
        failures++;
    }
    putchar('\n');
}

static void fail_unless(int ok, const char *what)
{
    if (!ok) {
        printf("%s: UNEXPECTED\n", what);
        failures++;
    }
}

static const char *type_of(mode_t m)
{
    if (S_ISREG(m)) return "file";
    if (S_ISDIR(m)) return "dir";
    if (S_ISLNK(m)) return "symlink";
    return "other";
}

static const char *dtype_name(unsigned char t)
{
    switch (t) {
    case DT_REG: return "file";
    case DT_DIR: return "dir";
    case DT_LNK: return "symlink";
    case DT_UNKNOWN: return "unknown";
    default: return "other";
    }
}

/* "stat REL: size=N type=T" (size only for files: a directory's size is fs-specific). */
static void show_stat(const char *rel, int follow, const char *want_type)
{
    struct stat st;
    char what[128];
    snprintf(what, sizeof what, "%s %s", follow ? "stat" : "lstat", rel);
    int rc = follow ? stat(P(rel), &st) : lstat(P(rel), &st);
    if (rc != 0) {
        check(what, rc, 0);
        return;
    }
    if (S_ISREG(st.st_mode))
        printf("%s: size=%lld type=file\n", what, (long long)st.st_size);
    else
        printf("%s: type=%s\n", what, type_of(st.st_mode));
    if (strcmp(type_of(st.st_mode), want_type) != 0) {
        printf("%s: UNEXPECTED type (expected %s)\n", what, want_type);
        failures++;
    }
}

/* Reads a whole file (up to cap bytes) into buf; returns its length or -1. */
static ssize_t slurp(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return -1;
    size_t len = 0;
    for (;;) {
        ssize_t n = read(fd, buf + len, cap - len);
        if (n < 0) {
            int e = errno;
            close(fd);
            errno = e;
            return -1;
        }
        if (n == 0)
            break;
        len += (size_t)n;
        if (len == cap)
            break;
    }
    close(fd);
    return (ssize_t)len;
}

/* "read REL: CONTENT" (escaped); want_len bytes of want are the expected content. */
static void show_file_n(const char *rel, const char *want, size_t want_len)
{
    char buf[256];
    char what[128];
    snprintf(what, sizeof what, "read %s", rel);
    ssize_t n = slurp(P(rel), buf, sizeof buf);
    if (n < 0) {
        check(what, -1, 0);
        return;
    }
    printf("%s: ", what);
    print_escaped(buf, (size_t)n);
    putchar('\n');
    if ((size_t)n != want_len || memcmp(buf, want, (size_t)n) != 0) {
        printf("%s: UNEXPECTED content\n", what);
        failures++;
    }
}

/* Sorted listing of a directory, one "  NAME TYPE" line per entry. Returns the entry count. */
static int list_dir(const char *rel, int print)
{
    char what[128];
    snprintf(what, sizeof what, "opendir %s", rel);
    DIR *d = opendir(P(rel));
    if (d == NULL) {
        check(what, -1, 0);
        return -1;
    }
    char *names[512];
    unsigned char types[512];
    int count = 0;
    struct dirent *e;
    errno = 0;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (count == 512)
            break;
        size_t len = strlen(e->d_name);
        /* name + NUL + the type byte, so the type follows the name when sorted */
        char *copy = malloc(len + 2);
        memcpy(copy, e->d_name, len + 1);
        copy[len + 1] = (char)e->d_type;
        names[count++] = copy;
        errno = 0;
    }
    if (errno != 0)
        check("readdir", -1, 0);
    closedir(d);
    qsort(names, (size_t)count, sizeof names[0], cmp_strings);
    if (print)
        printf("list %s: %d entries\n", rel, count);
    for (int i = 0; i < count; i++) {
        types[i] = (unsigned char)names[i][strlen(names[i]) + 1];
        if (print)
            printf("  %s %s\n", names[i], dtype_name(types[i]));
    }
    if (!print) {
        /* the "many" directory: names must be entry-with-a-longish-name-000 .. -(count-1) */
        for (int i = 0; i < count; i++) {
            char want[64];
            snprintf(want, sizeof want, "entry-with-a-longish-name-%03d", i);
            if (strcmp(names[i], want) != 0 || types[i] != DT_REG) {
                printf("list %s: UNEXPECTED entry %s\n", rel, names[i]);
                failures++;
                break;
            }
        }
    }
    for (int i = 0; i < count; i++)
        free(names[i]);
    return count;
}

#define show_file(rel, want) show_file_n((rel), (want), sizeof(want) - 1)

static void step_basics(void)
{
    check("mkdir work", mkdir(P("work"), 0755), 0);
    check("mkdir work (again)", mkdir(P("work"), 0755), EEXIST);
    check("mkdir work/sub", mkdir(P("work/sub"), 0755), 0);
    check("mkdir work/missing/x", mkdir(P("work/missing/x"), 0755), ENOENT);

    /* create + write through stdio */
    FILE *f = fopen(P("work/a.txt"), "w");
    if (f == NULL) {
        check("fopen work/a.txt w", -1, 0);
    } else {
        fputs("hello\n", f);
        check("fopen+fputs+fclose work/a.txt", fclose(f) == 0 ? 0 : -1, 0);
    }
    show_file("work/a.txt", "hello\n");

    /* O_APPEND: writes go to the end even after seeking to 0 */
    int fd = open(P("work/a.txt"), O_WRONLY | O_APPEND);
    check("open work/a.txt O_WRONLY|O_APPEND", fd, 0);
    if (fd >= 0) {
        check_count("lseek SET 0", lseek(fd, 0, SEEK_SET), 0);
        check_count("append write 6", write(fd, "world\n", 6), 6);
        check_count("tell after append", lseek(fd, 0, SEEK_CUR), 12);
        close(fd);
    }
    show_file("work/a.txt", "hello\nworld\n");
}

static void step_seek(void)
{
    char buf[64];
    int fd = open(P("work/a.txt"), O_RDONLY);
    check("open work/a.txt O_RDONLY", fd, 0);
    if (fd < 0)
        return;
    check_count("lseek SET 6", lseek(fd, 6, SEEK_SET), 6);
    ssize_t n = read(fd, buf, 5);
    check_count("read 5", n, 5);
    if (n == 5)
        fail_unless(memcmp(buf, "world", 5) == 0, "read 5 content");
    check_count("tell", lseek(fd, 0, SEEK_CUR), 11);
    check_count("lseek CUR -2", lseek(fd, -2, SEEK_CUR), 9);
    check_count("lseek END -3", lseek(fd, -3, SEEK_END), 9);
    check_count("lseek END 0", lseek(fd, 0, SEEK_END), 12);
    check_count("read at EOF", read(fd, buf, sizeof buf), 0);
    errno = 0;
    off_t bad = lseek(fd, -100, SEEK_SET);
    check("lseek SET -100", bad < 0 ? -1 : 0, EINVAL);
    /* refused either way, but hosts differ on the errno (EBADF, ENOTCAPABLE) */
    ssize_t w = write(fd, "x", 1);
    printf("write to O_RDONLY fd: %s\n", w < 0 ? "refused" : "allowed");
    fail_unless(w < 0, "write to O_RDONLY fd");
    close(fd);

    /* stdio position */
    FILE *f = fopen(P("work/a.txt"), "r");
    if (f == NULL) {
        check("fopen work/a.txt r", -1, 0);
        return;
    }
    check("fseek 3", fseek(f, 3, SEEK_SET), 0);
    check_count("ftell", ftell(f), 3);
    if (fgets(buf, sizeof buf, f) != NULL) {
        printf("fgets: ");
        print_escaped(buf, strlen(buf));
        putchar('\n');
    }
    check_count("ftell after fgets", ftell(f), 6);
    fclose(f);
}

static void step_pread_truncate(void)
{
    char buf[64];
    int fd = open(P("work/a.txt"), O_RDWR);
    check("open work/a.txt O_RDWR", fd, 0);
    if (fd < 0)
        return;
    check_count("pwrite 5 at 0", pwrite(fd, "HELLO", 5, 0), 5);
    ssize_t n = pread(fd, buf, 5, 6);
    check_count("pread 5 at 6", n, 5);
    if (n == 5)
        fail_unless(memcmp(buf, "world", 5) == 0, "pread 5 at 6 content");
    n = pread(fd, buf, 5, 0);
    check_count("pread 5 at 0", n, 5);
    if (n == 5)
        fail_unless(memcmp(buf, "HELLO", 5) == 0, "pread 5 at 0 content");
    check_count("pread at 100", pread(fd, buf, 5, 100), 0);
    check_count("pwrite 1 at 14", pwrite(fd, "!", 1, 14), 1);
    check_count("tell after pread/pwrite", lseek(fd, 0, SEEK_CUR), 0);
    show_file("work/a.txt", "HELLO\nworld\n\0\0!" /* 15 bytes: a hole of two NULs */);

    struct stat st;
    if (check("fstat", fstat(fd, &st), 0) == 0)
        printf("fstat: size=%lld type=%s\n", (long long)st.st_size, type_of(st.st_mode));
    check("ftruncate 4", ftruncate(fd, 4), 0);
    if (check("fstat", fstat(fd, &st), 0) == 0)
        printf("fstat: size=%lld\n", (long long)st.st_size);
    check("ftruncate 10", ftruncate(fd, 10), 0);
    n = pread(fd, buf, sizeof buf, 0);
    check_count("pread after extend", n, 10);
    if (n >= 0) {
        printf("content after extend: ");
        print_escaped(buf, (size_t)n);
        putchar('\n');
    }
    check("fsync", fsync(fd), 0);
    check("fdatasync", fdatasync(fd), 0);
    check("close", close(fd), 0);
    check("close (again)", close(fd), EBADF);
}

static void step_stat_times(void)
{
    show_stat("work/a.txt", 1, "file");
    show_stat("work/sub", 1, "dir");
    struct stat st;
    check("stat work/missing.txt", stat(P("work/missing.txt"), &st), ENOENT);

    int dfd = open(P("work"), O_RDONLY | O_DIRECTORY);
    check("open work O_DIRECTORY", dfd, 0);
    if (dfd >= 0) {
        if (check("fstat work", fstat(dfd, &st), 0) == 0)
            printf("fstat work: type=%s\n", type_of(st.st_mode));
        close(dfd);
    }

    /* Times are set to fixed values and read back, so they print deterministically. */
    struct timespec ts[2] = {{1000000000, 0}, {1234567890, 0}};
    check("utimensat work/a.txt", utimensat(AT_FDCWD, P("work/a.txt"), ts, 0), 0);
    if (stat(P("work/a.txt"), &st) == 0)
        printf("times work/a.txt: atime=%lld mtime=%lld\n", (long long)st.st_atim.tv_sec, (long long)st.st_mtim.tv_sec);
    int fd = open(P("work/a.txt"), O_WRONLY);
    if (fd >= 0) {
        struct timespec ts2[2] = {{1500000000, 0}, {1600000000, 0}};
        check("futimens work/a.txt", futimens(fd, ts2), 0);
        if (fstat(fd, &st) == 0)
            printf("times work/a.txt: atime=%lld mtime=%lld\n", (long long)st.st_atim.tv_sec, (long long)st.st_mtim.tv_sec);
        close(fd);
    }
}

static void step_rename(void)
{
    struct stat st;
    check("rename work/a.txt work/b.txt", rename(P("work/a.txt"), P("work/b.txt")), 0);
    check("stat work/a.txt", stat(P("work/a.txt"), &st), ENOENT);
    show_stat("work/b.txt", 1, "file");

    FILE *f = fopen(P("work/c.txt"), "w");
    if (f != NULL) {
        fputs("cc\n", f);
        fclose(f);
    }
    check("rename work/c.txt over work/b.txt", rename(P("work/c.txt"), P("work/b.txt")), 0);
    show_file("work/b.txt", "cc\n");
    check("rename work/missing.txt work/x.txt", rename(P("work/missing.txt"), P("work/x.txt")), ENOENT);

    check("rename work/sub work/sub2", rename(P("work/sub"), P("work/sub2")), 0);
    check("stat work/sub", stat(P("work/sub"), &st), ENOENT);
    show_stat("work/sub2", 1, "dir");
}

static void step_symlink(void)
{
    char buf[256];
    check("symlink b.txt work/link", symlink("b.txt", P("work/link")), 0);
    ssize_t n = readlink(P("work/link"), buf, sizeof buf);
    if (n < 0) {
        check("readlink work/link", -1, 0);
    } else {
        printf("readlink work/link: ");
        print_escaped(buf, (size_t)n);
        putchar('\n');
        fail_unless(n == 5 && memcmp(buf, "b.txt", 5) == 0, "readlink work/link content");
    }
    show_stat("work/link", 0, "symlink");
    show_stat("work/link", 1, "file");
    show_file("work/link", "cc\n");
    check("symlink over existing work/link", symlink("b.txt", P("work/link")), EEXIST);
    check("readlink of a regular file", readlink(P("work/b.txt"), buf, sizeof buf) < 0 ? -1 : 0, EINVAL);

    check("symlink sub2 work/dirlink", symlink("sub2", P("work/dirlink")), 0);
    show_stat("work/dirlink", 1, "dir");
    FILE *f = fopen(P("work/dirlink/inner.txt"), "w");
    if (f == NULL) {
        check("fopen work/dirlink/inner.txt w", -1, 0);
    } else {
        fputs("inner\n", f);
        check("write through work/dirlink/inner.txt", fclose(f) == 0 ? 0 : -1, 0);
    }
    show_stat("work/sub2/inner.txt", 1, "file");
}

static void step_errors(void)
{
    check("open work/missing.txt", open(P("work/missing.txt"), O_RDONLY), ENOENT);
    errno = 0;
    FILE *f = fopen(P("work/missing.txt"), "r");
    check("fopen work/missing.txt r", f ? 0 : -1, ENOENT);
    if (f)
        fclose(f);
    check("open work/b.txt O_CREAT|O_EXCL", open(P("work/b.txt"), O_WRONLY | O_CREAT | O_EXCL, 0644), EEXIST);
    check("open work/b.txt O_DIRECTORY", open(P("work/b.txt"), O_RDONLY | O_DIRECTORY), ENOTDIR);
    check("open work/b.txt/x", open(P("work/b.txt/x"), O_RDONLY), ENOTDIR);
    check("rmdir work/sub2 (not empty)", rmdir(P("work/sub2")), ENOTEMPTY);
    check("rmdir work/b.txt", rmdir(P("work/b.txt")), ENOTDIR);
    check("unlink work/missing.txt", unlink(P("work/missing.txt")), ENOENT);
    check("rmdir work/missing", rmdir(P("work/missing")), ENOENT);
}

/* Enough entries, with long enough names, that readdir takes several fd_readdir calls (cookies). */
static void step_many(void)
{
    enum { MANY = 150 };
    char rel[96];
    int made = 0;
    check("mkdir work/many", mkdir(P("work/many"), 0755), 0);
    for (int i = 0; i < MANY; i++) {
        snprintf(rel, sizeof rel, "work/many/entry-with-a-longish-name-%03d", i);
        int fd = open(P(rel), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            made++;
            close(fd);
        }
    }
    check_count("create work/many/*", made, MANY);
    check_count("list work/many", list_dir("work/many", 0), MANY);
    int removed = 0;
    for (int i = 0; i < MANY; i++) {
        snprintf(rel, sizeof rel, "work/many/entry-with-a-longish-name-%03d", i);
        if (unlink(P(rel)) == 0)
            removed++;
    }
    check_count("unlink work/many/*", removed, MANY);
    check("rmdir work/many", rmdir(P("work/many")), 0);
}

static void step_cleanup(void)
{
    struct stat st;
    check("unlink work/link", unlink(P("work/link")), 0);
    check("unlink work/dirlink", unlink(P("work/dirlink")), 0);
    show_stat("work/sub2", 1, "dir"); /* the link's target is still there */
    check("unlink work/sub2/inner.txt", unlink(P("work/sub2/inner.txt")), 0);
    check("unlink work/b.txt", unlink(P("work/b.txt")), 0);
    check("rmdir work/sub2", rmdir(P("work/sub2")), 0);
    check("rmdir work", rmdir(P("work")), 0);
    check("stat work", stat(P("work"), &st), ENOENT);
}

static void step_kept(void)
{
    long runs = 0;
    FILE *f = fopen(P("kept.txt"), "r");
    if (f == NULL) {
        int e = errno;
        printf("kept.txt: %s\n", e == ENOENT ? "missing" : errno_name(e));
        if (e != ENOENT)
            failures++;
    } else {
        if (fscanf(f, "runs=%ld", &runs) == 1) {
            printf("kept.txt: runs=%ld\n", runs);
        } else {
            printf("kept.txt: UNREADABLE\n");
            failures++;
        }
        fclose(f);
    }
    f = fopen(P("kept.txt"), "w");
    if (f == NULL) {
        check("fopen kept.txt w", -1, 0);
        return;
    }
    fprintf(f, "runs=%ld\n", runs + 1);
    check("write kept.txt", fclose(f) == 0 ? 0 : -1, 0);
    printf("kept.txt: now runs=%ld\n", runs + 1);
}

int main(int argc, char **argv)
{
    wagi_header();
    base = argc > 1 ? argv[1] : "/data";
    printf("files in %s\n", base);
    step_basics();
    step_seek();
    step_pread_truncate();
    step_stat_times();
    step_rename();
    step_symlink();
    step_errors();
    step_many();
    list_dir("work", 1);
    list_dir("work/sub2", 1);
    step_cleanup();
    step_kept();
    if (failures == 0)
        printf("files: all ok\n");
    else
        printf("files: %d unexpected\n", failures);
    return failures == 0 ? 0 : 1;
}
