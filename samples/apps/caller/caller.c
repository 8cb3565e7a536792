// caller: an app that calls another service over the mesh. Each request to it
// sends GET TARGET (default http://temps.mesh/reading) with capability
// http-out, and answers with what came back:
//   "caller on NODE got 200 from http://temps.mesh/reading: hello from edge-2 ..."
// or, when no answer came, 502 and the reason in the app's log.
#include "outpost.h"

int main(void) {
    const char *node = outpost_env("OUTPOST_NODE_NAME");
    const char *target = getenv("TARGET");
    if (!target || !*target) target = "http://temps.mesh/reading";

    int status = outpost_http_get(target);
    if (status < 0) {
        char text[512];
        snprintf(text, sizeof text, "caller on %s could not reach %s (see the app's log)\n", node, target);
        outpost_respond_text(502, text);
        return 0;
    }

    static char body[64 * 1024];
    int length = outpost_http_response_body(body, sizeof body - 1);
    if (length < 0 || (size_t)length >= sizeof body) length = 0;
    body[length] = '\0';
    char text[sizeof body + 512];
    int n = snprintf(text, sizeof text, "caller on %s got %d from %s: %s", node, status, target, body);
    outpost_respond(200, "text/plain; charset=utf-8", text, (size_t)n < sizeof text ? (size_t)n : sizeof text - 1);
    return 0;
}
