// hello: the smallest Outpost app. It follows WAGI (CGI over WASI stdio):
// the request arrives in the environment and on stdin, the response is
// written to stdout as CGI headers, a blank line, then the body.
#include <stdio.h>
#include <stdlib.h>

int main(void) {
    const char *node = getenv("OUTPOST_NODE_NAME");
    const char *path = getenv("PATH_INFO");
    const char *greeting = getenv("GREETING");

    printf("Content-Type: text/plain; charset=utf-8\n");
    printf("Status: 200\n\n");
    printf("%s from %s (path %s)\n",
           greeting ? greeting : "hello",
           node ? node : "an unnamed node",
           path && *path ? path : "/");
    return 0;
}
