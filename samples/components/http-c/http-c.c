/*
 * http-c: a wasi:http/proxy component in C (sdk/c/wasi_http.h), the smallest a proxy gets.
 *   GET  /...           "hello from a component: GET /path?query"
 *   POST /...           echoes the request body
 *   GET  /...?size=N    N bytes of a-z (at most 256 KiB), to measure bodies
 * Built by samples/components/build.sh; the .wasm beside it is committed.
 */
#include "wasi_http.h"

static uint8_t out[256 * 1024];

static size_t size_param(const char *s, size_t n) {
    for (size_t i = 0; i + 5 <= n; i++) {
        if (s[i] == 's' && s[i + 1] == 'i' && s[i + 2] == 'z' && s[i + 3] == 'e' && s[i + 4] == '=') {
            size_t v = 0;
            for (i += 5; i < n && s[i] >= '0' && s[i] <= '9'; i++) v = v * 10 + (size_t)(s[i] - '0');
            return v < sizeof out ? v : sizeof out;
        }
    }
    return (size_t)-1;
}

WASI_HTTP_HANDLER(request, outparam) {
    size_t path_len, method_len;
    const char *path = wasi_http_path(request, &path_len);
    const char *method = wasi_http_method(request, &method_len);
    if (method_len == 4 && method[0] == 'P' && method[1] == 'O') {
        long n = wasi_http_read_body(request, out, sizeof out);
        wasi_http_respond(outparam, n < 0 ? 400 : 200, "application/octet-stream", -1, out, n < 0 ? 0 : (size_t)n);
        return;
    }
    size_t size = size_param(path, path_len);
    if (size != (size_t)-1) {
        for (size_t i = 0; i < size; i++) out[i] = (uint8_t)('a' + i % 26);
        wasi_http_respond(outparam, 200, "application/octet-stream", -1, out, size);
        return;
    }
    static const char hello[] = "hello from a component: ";
    size_t n = 0;
    for (size_t i = 0; i < sizeof hello - 1; i++) out[n++] = (uint8_t)hello[i];
    for (size_t i = 0; i < method_len; i++) out[n++] = (uint8_t)method[i];
    out[n++] = ' ';
    for (size_t i = 0; i < path_len && n < 4000; i++) out[n++] = (uint8_t)path[i];
    out[n++] = '\n';
    wasi_http_respond(outparam, 200, "text/plain; charset=utf-8", -1, out, n);
}
