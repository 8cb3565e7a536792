/*
 * wasi_http.h - write a wasi:http/proxy component in C, without a bindings generator.
 *
 * The component model's canonical ABI, by hand, for the part of wasi:http@0.2 and wasi:io@0.2
 * a small HTTP handler needs: read the method, path, headers and body of the request; answer
 * with a status, headers and a body written in chunks. Build a core module with
 *
 *   clang --target=wasm32 -nostdlib -O2 -Wl,--no-entry -o app.core.wasm app.c
 *
 * then make it a component with jco (samples/components/build.sh does both): the WIT world
 * wasi:http/proxy@0.2.0 is embedded, and `jco new` wraps the module. No libc and no WASI
 * preview 1 adapter: the component imports only wasi:http/types and wasi:io.
 *
 * Define your handler as
 *
 *   WASI_HTTP_HANDLER(request, outparam) { ... wasi_http_respond(outparam, 200, ...); }
 *
 * Memory: strings and lists the host returns land in a bump heap (wasi_http_heap) that is
 * reset at each request: a component instance serves one request on Outpost.
 */
#ifndef WASI_HTTP_H
#define WASI_HTTP_H

#include <stddef.h>
#include <stdint.h>

#define WASI_HTTP_TYPES(name) __attribute__((import_module("wasi:http/types@0.2.0"), import_name(name)))
#define WASI_IO_STREAMS(name) __attribute__((import_module("wasi:io/streams@0.2.0"), import_name(name)))

/* Handles: own<...> and borrow<...> resources are i32 handles in the guest's table. */
typedef int32_t wasi_handle;

WASI_HTTP_TYPES("[constructor]fields") wasi_handle wasi_fields_new(void);
WASI_HTTP_TYPES("[method]fields.append") void wasi_fields_append(wasi_handle self, const char *name, size_t name_len, const char *value, size_t value_len, uint8_t *ret);
WASI_HTTP_TYPES("[method]fields.entries") void wasi_fields_entries(wasi_handle self, uint8_t *ret);
WASI_HTTP_TYPES("[resource-drop]fields") void wasi_fields_drop(wasi_handle self);
WASI_HTTP_TYPES("[method]incoming-request.method") void wasi_request_method(wasi_handle self, uint8_t *ret);
WASI_HTTP_TYPES("[method]incoming-request.path-with-query") void wasi_request_path(wasi_handle self, uint8_t *ret);
WASI_HTTP_TYPES("[method]incoming-request.headers") wasi_handle wasi_request_headers(wasi_handle self);
WASI_HTTP_TYPES("[method]incoming-request.consume") void wasi_request_consume(wasi_handle self, uint8_t *ret);
WASI_HTTP_TYPES("[resource-drop]incoming-request") void wasi_request_drop(wasi_handle self);
WASI_HTTP_TYPES("[method]incoming-body.stream") void wasi_incoming_body_stream(wasi_handle self, uint8_t *ret);
WASI_HTTP_TYPES("[resource-drop]incoming-body") void wasi_incoming_body_drop(wasi_handle self);
WASI_HTTP_TYPES("[constructor]outgoing-response") wasi_handle wasi_response_new(wasi_handle headers);
WASI_HTTP_TYPES("[method]outgoing-response.set-status-code") int32_t wasi_response_set_status(wasi_handle self, int32_t status);
WASI_HTTP_TYPES("[method]outgoing-response.body") void wasi_response_body(wasi_handle self, uint8_t *ret);
WASI_HTTP_TYPES("[method]outgoing-body.write") void wasi_outgoing_body_write(wasi_handle self, uint8_t *ret);
WASI_HTTP_TYPES("[static]outgoing-body.finish") void wasi_outgoing_body_finish(wasi_handle self, int32_t has_trailers, wasi_handle trailers, uint8_t *ret);
/* response: result<own<outgoing-response>, error-code>, flattened: (is_err, payload...) */
WASI_HTTP_TYPES("[static]response-outparam.set") void wasi_outparam_set(wasi_handle param, int32_t is_err, int32_t a, int32_t b, int64_t c, int32_t d, int32_t e, int32_t f, int32_t g);
WASI_IO_STREAMS("[method]input-stream.blocking-read") void wasi_input_read(wasi_handle self, int64_t len, uint8_t *ret);
WASI_IO_STREAMS("[resource-drop]input-stream") void wasi_input_drop(wasi_handle self);
WASI_IO_STREAMS("[method]output-stream.blocking-write-and-flush") void wasi_output_write(wasi_handle self, const uint8_t *buf, size_t len, uint8_t *ret);
WASI_IO_STREAMS("[resource-drop]output-stream") void wasi_output_drop(wasi_handle self);

/* Return areas: a result's discriminant is the first byte, its payload at offset 4 (i32s) or 8. */
#define WASI_RET(name) uint8_t name[16] __attribute__((aligned(8)))
#define WASI_RET_I32(ret, offset) (*(int32_t *)((ret) + (offset)))

#ifndef WASI_HTTP_HEAP_BYTES
#define WASI_HTTP_HEAP_BYTES (1 << 20)
#endif

static uint8_t wasi_http_heap[WASI_HTTP_HEAP_BYTES];
static size_t wasi_http_heap_top;

void *memcpy(void *dst, const void *src, size_t n) { uint8_t *d = dst; const uint8_t *s = src; while (n--) *d++ = *s++; return dst; }
void *memset(void *dst, int c, size_t n) { uint8_t *d = dst; while (n--) *d++ = (uint8_t)c; return dst; }

/* The canonical ABI's allocator: where the host puts the strings and lists it returns. */
__attribute__((export_name("cabi_realloc")))
void *cabi_realloc(void *old, size_t old_size, size_t align, size_t new_size) {
    size_t at = (wasi_http_heap_top + align - 1) & ~(align - 1);
    if (at + new_size > sizeof wasi_http_heap) __builtin_trap();
    uint8_t *p = wasi_http_heap + at;
    memcpy(p, old, old_size < new_size ? old_size : new_size);
    wasi_http_heap_top = at + new_size;
    return p;
}

static inline size_t wasi_strlen(const char *s) { size_t n = 0; while (s[n]) n++; return n; }

static inline int wasi_starts_with(const char *s, size_t n, const char *prefix) {
    size_t m = wasi_strlen(prefix);
    if (n < m) return 0;
    for (size_t i = 0; i < m; i++) if (s[i] != prefix[i]) return 0;
    return 1;
}

/* The request's path and query ("/a/b?x=1"); its length in *len. */
static inline const char *wasi_http_path(wasi_handle request, size_t *len) {
    WASI_RET(ret);
    wasi_request_path(request, ret);
    *len = ret[0] ? (size_t)WASI_RET_I32(ret, 8) : 0;
    return ret[0] ? (const char *)(uintptr_t)WASI_RET_I32(ret, 4) : "";
}

/* The request's method ("GET"); its length in *len. */
static inline const char *wasi_http_method(wasi_handle request, size_t *len) {
    static const char *names[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"};
    WASI_RET(ret);
    wasi_request_method(request, ret);
    if (ret[0] < 9) { *len = wasi_strlen(names[ret[0]]); return names[ret[0]]; }
    *len = (size_t)WASI_RET_I32(ret, 8);
    return (const char *)(uintptr_t)WASI_RET_I32(ret, 4);
}

/*
 * Reads the request body into buf (at most cap bytes); returns its length, or -1 when the
 * stream failed before its end. A longer body is cut at cap.
 */
static inline long wasi_http_read_body(wasi_handle request, uint8_t *buf, size_t cap) {
    WASI_RET(ret);
    wasi_request_consume(request, ret);
    wasi_handle body = WASI_RET_I32(ret, 4);
    wasi_incoming_body_stream(body, ret);
    wasi_handle stream = WASI_RET_I32(ret, 4);
    size_t n = 0;
    long result = -1;
    for (;;) {
        WASI_RET(r);
        wasi_input_read(stream, 16384, r);
        if (r[0] != 0) { result = r[4] == 1 ? (long)n : -1; break; } /* stream-error: 1 = closed, the end */
        const uint8_t *chunk = (const uint8_t *)(uintptr_t)WASI_RET_I32(r, 4);
        size_t len = (size_t)WASI_RET_I32(r, 8);
        for (size_t i = 0; i < len && n < cap; i++) buf[n++] = chunk[i];
    }
    wasi_input_drop(stream);
    wasi_incoming_body_drop(body);
    return result;
}

/*
 * Answers: status, a content type (and any headers already in `headers`, or -1 for none), and
 * the body written in 4 KiB chunks. Returns 0, or -1 when the host refused the body (over the
 * app's maxResponseBytes: the request then fails with 500).
 */
static inline int wasi_http_respond(wasi_handle outparam, int status, const char *content_type, wasi_handle headers, const uint8_t *body, size_t len) {
    WASI_RET(ret);
    if (headers < 0) headers = wasi_fields_new();
    wasi_fields_append(headers, "content-type", 12, content_type, wasi_strlen(content_type), ret);
    wasi_handle response = wasi_response_new(headers);
    wasi_response_set_status(response, status);
    wasi_response_body(response, ret);
    wasi_handle out = WASI_RET_I32(ret, 4);
    wasi_outgoing_body_write(out, ret);
    wasi_handle stream = WASI_RET_I32(ret, 4);
    wasi_outparam_set(outparam, 0, response, 0, 0, 0, 0, 0, 0);
    int refused = 0;
    for (size_t at = 0; at < len;) {
        size_t chunk = len - at < 4096 ? len - at : 4096;
        wasi_output_write(stream, body + at, chunk, ret);
        if (ret[0] != 0) { refused = 1; break; }
        at += chunk;
    }
    wasi_output_drop(stream);
    wasi_outgoing_body_finish(out, 0, 0, ret);
    return refused ? -1 : 0;
}

#define WASI_HTTP_HANDLER(request, outparam) \
    static void wasi_http_handle(wasi_handle request, wasi_handle outparam); \
    __attribute__((export_name("wasi:http/incoming-handler@0.2.0#handle"))) \
    void wasi_http_handle_export(wasi_handle request, wasi_handle outparam) { wasi_http_heap_top = 0; wasi_http_handle(request, outparam); } \
    static void wasi_http_handle(wasi_handle request, wasi_handle outparam)

#endif
