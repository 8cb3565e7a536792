/*
 * probe: a wasi:http/proxy component whose paths exercise what the Outpost host must get
 * right, hostile ones included (built by samples/components/build.sh into
 * tests/Outpost.Wasm.Tests/Modules/components/probe.wasm).
 *   /hello...      "hello from a component: METHOD PATH", with header x-outpost-sample
 *   /missing       the same, answered 404
 *   /echo          the request body back
 *   /headers       the request's headers, one "name: value" a line
 *   /big?size=N    N bytes of a-z
 *   /pastend       reads the body to its end, then once more: "closed again"
 *   /trap          traps
 *   /noset         returns without setting a response
 *   /loop          never returns
 *   /dropped       uses a handle it has dropped
 */
#include "wasi_http.h"

static uint8_t out[256 * 1024];
static size_t out_len;

static void put(const char *s, size_t n) { for (size_t i = 0; i < n && out_len < sizeof out; i++) out[out_len++] = (uint8_t)s[i]; }
static void puts_(const char *s) { put(s, wasi_strlen(s)); }

static size_t number(const char *s, size_t n, const char *key) {
    size_t k = wasi_strlen(key);
    for (size_t i = 0; i + k <= n; i++) {
        size_t j = 0;
        while (j < k && s[i + j] == key[j]) j++;
        if (j == k) { size_t v = 0; for (i += k; i < n && s[i] >= '0' && s[i] <= '9'; i++) v = v * 10 + (size_t)(s[i] - '0'); return v; }
    }
    return 0;
}

WASI_HTTP_HANDLER(request, outparam) {
    WASI_RET(ret);
    out_len = 0;
    size_t path_len, method_len;
    const char *path = wasi_http_path(request, &path_len);
    const char *method = wasi_http_method(request, &method_len);

    if (wasi_starts_with(path, path_len, "/trap")) __builtin_trap();
    if (wasi_starts_with(path, path_len, "/noset")) { wasi_request_drop(request); return; }
    if (wasi_starts_with(path, path_len, "/loop")) { for (volatile int i = 0;; i++) {} }
    if (wasi_starts_with(path, path_len, "/dropped")) {
        wasi_handle h = wasi_request_headers(request);
        wasi_fields_drop(h);
        wasi_fields_entries(h, ret); /* a handle this guest already dropped: the host must trap */
        return;
    }
    if (wasi_starts_with(path, path_len, "/big")) {
        size_t size = number(path, path_len, "size=");
        if (size > sizeof out) size = sizeof out;
        for (size_t i = 0; i < size; i++) out[i] = (uint8_t)('a' + i % 26);
        wasi_http_respond(outparam, 200, "application/octet-stream", -1, out, size);
        return;
    }
    if (wasi_starts_with(path, path_len, "/echo")) {
        long n = wasi_http_read_body(request, out, sizeof out);
        wasi_http_respond(outparam, n < 0 ? 500 : 200, "text/plain", -1, out, n < 0 ? 0 : (size_t)n);
        return;
    }
    if (wasi_starts_with(path, path_len, "/pastend")) {
        wasi_request_consume(request, ret);
        wasi_handle body = WASI_RET_I32(ret, 4);
        wasi_incoming_body_stream(body, ret);
        wasi_handle stream = WASI_RET_I32(ret, 4);
        WASI_RET(r);
        do wasi_input_read(stream, 1024, r); while (r[0] == 0);
        wasi_input_read(stream, 1024, r); /* read again after the end */
        puts_(r[0] != 0 && r[4] == 1 ? "closed again\n" : "not closed\n");
        wasi_input_drop(stream);
        wasi_incoming_body_drop(body);
        wasi_http_respond(outparam, 200, "text/plain", -1, out, out_len);
        return;
    }
    if (wasi_starts_with(path, path_len, "/headers")) {
        wasi_handle h = wasi_request_headers(request);
        wasi_fields_entries(h, ret);
        const uint32_t *list = (const uint32_t *)(uintptr_t)WASI_RET_I32(ret, 0);
        uint32_t count = (uint32_t)WASI_RET_I32(ret, 4);
        for (uint32_t i = 0; i < count; i++) {
            put((const char *)(uintptr_t)list[i * 4], list[i * 4 + 1]);
            puts_(": ");
            put((const char *)(uintptr_t)list[i * 4 + 2], list[i * 4 + 3]);
            puts_("\n");
        }
        wasi_fields_drop(h);
        wasi_http_respond(outparam, 200, "text/plain", -1, out, out_len);
        return;
    }
    puts_("hello from a component: ");
    put(method, method_len);
    puts_(" ");
    put(path, path_len);
    puts_("\n");
    wasi_handle headers = wasi_fields_new();
    wasi_fields_append(headers, "x-outpost-sample", 16, "component", 9, ret);
    wasi_http_respond(outparam, wasi_starts_with(path, path_len, "/missing") ? 404 : 200, "text/plain; charset=utf-8", headers, out, out_len);
}
