// hello: the smallest Outpost app. It follows WAGI (CGI over WASI stdio):
// the request arrives in the environment and on stdin, the response is
// written to stdout as CGI headers, a blank line, then the body.
//
// GREETING sets the greeting. STATUS (default 200) sets the status of every
// answer except GET .../healthz, which always answers 200: a revision with
// STATUS=500 passes its readiness probe and then fails, to try rollout gates.
// A request's own ?status=NNN overrides STATUS, to try alert rules.
// With LOG_REQUESTS=1 every answer but the health check is logged on stderr
// (the app's log), one line per request: "GET /hello?x=1 -> 200".
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void) {
    const char *node = getenv("OUTPOST_NODE_NAME");
    const char *path = getenv("PATH_INFO");
    const char *greeting = getenv("GREETING");
    const char *status = getenv("STATUS");
    const char *method = getenv("REQUEST_METHOD");
    const char *query = getenv("QUERY_STRING");
    const char *script = getenv("SCRIPT_NAME");
    const char *log = getenv("LOG_REQUESTS");
    size_t length = path ? strlen(path) : 0;
    int health = length >= 8 && strcmp(path + length - 8, "/healthz") == 0;

    char asked[4] = {0};
    const char *override = query ? strstr(query, "status=") : NULL;
    if (override && (override == query || override[-1] == '&') && strlen(override + 7) >= 3) {
        memcpy(asked, override + 7, 3);
        status = asked;
    }
    const char *answer = health || !status || !*status ? "200" : status;
    printf("Content-Type: text/plain; charset=utf-8\n");
    printf("Status: %s\n\n", answer);
    printf("%s from %s (path %s)\n",
           health ? "healthy" : greeting ? greeting : "hello",
           node ? node : "an unnamed node",
           path && *path ? path : "/");
    if (!health && log && strcmp(log, "1") == 0) {
        fprintf(stderr, "%s %s%s%s%s -> %s\n", method ? method : "GET", script ? script : "",
                path && *path ? path : (script && *script ? "" : "/"), query && *query ? "?" : "", query ? query : "", answer);
    }
    return 0;
}
