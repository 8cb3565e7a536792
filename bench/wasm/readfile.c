/*
 * readfile.c - the file-read figure of bench/run.sh ai.
 *
 *   readfile.wasm file PATH   reads PATH (a mounted 1 MB file) into a buffer, and sums it
 *   readfile.wasm memory      copies 1 MB the guest already holds into the same buffer, and sums it
 *
 * Prints the sum, so both do the same work on the same bytes but where they come from.
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define SIZE (1024 * 1024)
static unsigned char source[SIZE] = {1};
static unsigned char buffer[SIZE];

int main(int argc, char **argv)
{
    size_t got = 0;
    if (argc > 2 && strcmp(argv[1], "file") == 0) {
        int fd = open(argv[2], O_RDONLY);
        if (fd < 0) {
            perror(argv[2]);
            return 1;
        }
        ssize_t n;
        while (got < SIZE && (n = read(fd, buffer + got, SIZE - got)) > 0)
            got += (size_t)n;
        close(fd);
    } else {
        memcpy(buffer, source, SIZE);
        got = SIZE;
    }
    unsigned long sum = 0;
    for (size_t i = 0; i < got; i += 64)
        sum += buffer[i];
    printf("%zu bytes, sum %lu\n", got, sum);
    return 0;
}
