/*
 * fill.c - writes to a volume until the host says no, for the quota tests.
 *
 * Usage: fill.wasm [DIR [KIB]]   (DIR defaults to "/data", KIB to 1024)
 *
 * Writes DIR/fill.bin in 4 KiB chunks, at most KIB KiB, and prints how many bytes
 * went in and how the last write ended ("ok" when all of them did, else errno's
 * name: ENOSPC once a volume's quota is reached). Then it truncates the file to
 * half, and appends the rest again, to show that freed room can be used again.
 */
#include <fcntl.h>
#include <unistd.h>

#include "common.h"

int main(int argc, char **argv)
{
    wagi_header();
    const char *dir = argc > 1 ? argv[1] : "/data";
    long kib = argc > 2 ? atol(argv[2]) : 1024;
    char path[512];
    snprintf(path, sizeof path, "%s/fill.bin", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        printf("open %s: %s\n", path, errno_name(errno));
        return 1;
    }

    static char chunk[4096];
    memset(chunk, 'x', sizeof chunk);
    long written = 0;
    int last = 0;
    for (long i = 0; i < kib / 4; i++) {
        ssize_t n = write(fd, chunk, sizeof chunk);
        if (n < 0) {
            last = errno;
            break;
        }
        written += n;
    }
    printf("wrote %ld bytes: %s\n", written, errno_name(last));

    if (ftruncate(fd, written / 2) != 0) {
        printf("ftruncate: %s\n", errno_name(errno));
        return 1;
    }
    lseek(fd, 0, SEEK_END);
    long again = 0;
    while (again < written / 2) {
        ssize_t n = write(fd, chunk, sizeof chunk);
        if (n < 0) {
            break;
        }
        again += n;
    }
    printf("after truncating to half, wrote %ld bytes again\n", again);
    close(fd);
    return 0;
}
