// echo: answers with what it was sent - method, path, query, a header and the body.
// Shows how an app reads a request with the WAGI helpers of outpost.h.
#include "outpost.h"

int main(void) {
    static char body[64 * 1024];
    size_t len = outpost_request_body(body, sizeof body);
    const char *agent = outpost_request_header("User-Agent");
    const char *echo = outpost_request_header("X-Echo");

    printf("Status: 200\nContent-Type: text/plain; charset=utf-8\n\n");
    printf("method: %s\n", outpost_request_method());
    printf("path: %s\n", outpost_request_path());
    printf("query: %s\n", outpost_request_query());
    printf("user-agent: %s\n", agent ? agent : "-");
    printf("x-echo: %s\n", echo ? echo : "-");
    printf("body (%zu bytes): ", len);
    fwrite(body, 1, len, stdout);
    printf("\n");
    return 0;
}
