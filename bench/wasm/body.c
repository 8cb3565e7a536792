/*
 * body.c - the core-module baseline of bench/run.sh components: a WAGI module answering
 * QUERY_STRING size=N with N bytes of a-z, as samples/components/http-c answers ?size=N.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char body[256 * 1024];

int main(void)
{
    const char *query = getenv("QUERY_STRING");
    const char *size = query ? strstr(query, "size=") : NULL;
    size_t n = size ? (size_t)strtoul(size + 5, NULL, 10) : 0;
    if (n > sizeof body) n = sizeof body;
    for (size_t i = 0; i < n; i++) body[i] = (char)('a' + i % 26);
    printf("Content-Type: application/octet-stream\n\n");
    fwrite(body, 1, n, stdout);
    return 0;
}
