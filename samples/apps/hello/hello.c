// hello: the smallest Outpost app. It follows WAGI (CGI over WASI stdio):
// the request arrives in the environment and on stdin, the response is
// written to stdout as CGI headers, a blank line, then the body.
//
// GREETING sets the greeting. STATUS (default 200) sets the status of every
// answer except GET .../healthz, which always answers 200: a revision with
// STATUS=500 passes its readiness probe and then fails, to try rollout gates.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void) {
    const char *node = getenv("OUTPOST_NODE_NAME");
    const char *path = getenv("PATH_INFO");
    const char *greeting = getenv("GREETING");
    const char *status = getenv("STATUS");
    size_t length = path ? strlen(path) : 0;
    int health = length >= 8 && strcmp(path + length - 8, "/healthz") == 0;

    printf("Content-Type: text/plain; charset=utf-8\n");
    printf("Status: %s\n\n", health || !status || !*status ? "200" : status);
    printf("%s from %s (path %s)\n",
           health ? "healthy" : greeting ? greeting : "hello",
           node ? node : "an unnamed node",
           path && *path ? path : "/");
    return 0;
}
