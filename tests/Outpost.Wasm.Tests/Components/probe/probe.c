// A wasi:http/proxy component written against the canonical ABI by hand (no bindings
// generator): the requests it answers exercise what the Outpost host must get right.
#include <stdint.h>
#include <stddef.h>

#define HTTP(name) __attribute__((import_module("wasi:http/types@0.2.0"), import_name(name)))
#define IO(name) __attribute__((import_module("wasi:io/streams@0.2.0"), import_name(name)))

HTTP("[constructor]fields") int32_t fields_new(void);
HTTP("[method]fields.append") void fields_append(int32_t self, const char *name, size_t nlen, const char *value, size_t vlen, uint8_t *ret);
HTTP("[method]fields.entries") void fields_entries(int32_t self, uint8_t *ret);
HTTP("[resource-drop]fields") void fields_drop(int32_t self);
HTTP("[method]incoming-request.method") void request_method(int32_t self, uint8_t *ret);
HTTP("[method]incoming-request.path-with-query") void request_path(int32_t self, uint8_t *ret);
HTTP("[method]incoming-request.headers") int32_t request_headers(int32_t self);
HTTP("[method]incoming-request.consume") void request_consume(int32_t self, uint8_t *ret);
HTTP("[resource-drop]incoming-request") void request_drop(int32_t self);
HTTP("[method]incoming-body.stream") void body_stream(int32_t self, uint8_t *ret);
HTTP("[resource-drop]incoming-body") void incoming_body_drop(int32_t self);
HTTP("[constructor]outgoing-response") int32_t response_new(int32_t headers);
HTTP("[method]outgoing-response.set-status-code") int32_t response_set_status(int32_t self, int32_t status);
HTTP("[method]outgoing-response.body") void response_body(int32_t self, uint8_t *ret);
HTTP("[method]outgoing-body.write") void outgoing_body_write(int32_t self, uint8_t *ret);
HTTP("[static]outgoing-body.finish") void outgoing_body_finish(int32_t self, int32_t has_trailers, int32_t trailers, uint8_t *ret);
HTTP("[static]response-outparam.set") void outparam_set(int32_t param, int32_t is_err, int32_t a, int32_t b, int64_t c, int32_t d, int32_t e, int32_t f, int32_t g);
IO("[method]input-stream.blocking-read") void input_read(int32_t self, int64_t len, uint8_t *ret);
IO("[resource-drop]input-stream") void input_drop(int32_t self);
IO("[method]output-stream.blocking-write-and-flush") void output_write(int32_t self, const uint8_t *buf, size_t len, uint8_t *ret);
IO("[resource-drop]output-stream") void output_drop(int32_t self);

void *memcpy(void *d, const void *s, size_t n) { uint8_t *a = d; const uint8_t *b = s; while (n--) *a++ = *b++; return d; }
void *memset(void *d, int c, size_t n) { uint8_t *a = d; while (n--) *a++ = (uint8_t)c; return d; }

static uint8_t heap[1 << 20];
static size_t heap_top;

__attribute__((export_name("cabi_realloc")))
void *cabi_realloc(void *old, size_t old_size, size_t align, size_t new_size) {
    size_t at = (heap_top + align - 1) & ~(align - 1);
    if (at + new_size > sizeof heap) __builtin_trap();
    uint8_t *p = heap + at;
    for (size_t i = 0; i < old_size && i < new_size; i++) p[i] = ((uint8_t *)old)[i];
    heap_top = at + new_size;
    return p;
}

static size_t len(const char *s) { size_t n = 0; while (s[n]) n++; return n; }
static int starts(const char *s, size_t n, const char *prefix) {
    size_t m = len(prefix);
    if (n < m) return 0;
    for (size_t i = 0; i < m; i++) if (s[i] != prefix[i]) return 0;
    return 1;
}
static size_t number(const char *s, size_t n, const char *key) {
    size_t k = len(key);
    for (size_t i = 0; i + k <= n; i++) {
        size_t j = 0;
        while (j < k && s[i + j] == key[j]) j++;
        if (j == k) { size_t v = 0; for (i += k; i < n && s[i] >= '0' && s[i] <= '9'; i++) v = v * 10 + (s[i] - '0'); return v; }
    }
    return 0;
}

static uint8_t out[256 * 1024];
static size_t out_len;
static void put(const char *s, size_t n) { for (size_t i = 0; i < n && out_len < sizeof out; i++) out[out_len++] = (uint8_t)s[i]; }
static void puts_(const char *s) { put(s, len(s)); }

static void respond(int32_t outparam, int status, const char *type, int32_t headers) {
    uint8_t ret[16] __attribute__((aligned(8)));
    if (headers < 0) headers = fields_new();
    fields_append(headers, "content-type", 12, type, len(type), ret);
    int32_t response = response_new(headers);
    response_set_status(response, status);
    response_body(response, ret);
    int32_t body = *(int32_t *)(ret + 4);
    outgoing_body_write(body, ret);
    int32_t stream = *(int32_t *)(ret + 4);
    outparam_set(outparam, 0, response, 0, 0, 0, 0, 0, 0);
    for (size_t at = 0; at < out_len;) {
        size_t chunk = out_len - at < 4096 ? out_len - at : 4096;
        output_write(stream, out + at, chunk, ret);
        if (ret[0] != 0) break; // the stream refused (closed, or over the app's response cap)
        at += chunk;
    }
    output_drop(stream);
    outgoing_body_finish(body, 0, 0, ret);
}

static const char *method_name(uint8_t *m, size_t *n) {
    static const char *names[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"};
    if (m[0] < 9) { *n = len(names[m[0]]); return names[m[0]]; }
    *n = *(uint32_t *)(m + 8);
    return (const char *)(uintptr_t)*(uint32_t *)(m + 4);
}

__attribute__((export_name("wasi:http/incoming-handler@0.2.0#handle")))
void handle(int32_t request, int32_t outparam) {
    uint8_t ret[16] __attribute__((aligned(8)));
    heap_top = 0;
    out_len = 0;
    request_path(request, ret);
    const char *path = ret[0] ? (const char *)(uintptr_t)*(uint32_t *)(ret + 4) : "";
    size_t path_len = ret[0] ? *(uint32_t *)(ret + 8) : 0;
    uint8_t m[16] __attribute__((aligned(8)));
    request_method(request, m);
    size_t mlen;
    const char *method = method_name(m, &mlen);

    if (starts(path, path_len, "/trap")) __builtin_trap();
    if (starts(path, path_len, "/noset")) { request_drop(request); return; }
    if (starts(path, path_len, "/loop")) { for (volatile int i = 0;; i++) {} }
    if (starts(path, path_len, "/dropped")) {
        int32_t h = request_headers(request);
        fields_drop(h);
        fields_entries(h, ret); // a handle this guest already dropped: the host must trap
        return;
    }
    if (starts(path, path_len, "/big")) {
        size_t size = number(path, path_len, "size=");
        if (size > sizeof out) size = sizeof out;
        for (size_t i = 0; i < size; i++) out[i] = (uint8_t)('a' + i % 26);
        out_len = size;
        respond(outparam, 200, "application/octet-stream", -1);
        return;
    }
    if (starts(path, path_len, "/echo") || starts(path, path_len, "/pastend")) {
        request_consume(request, ret);
        int32_t body = *(int32_t *)(ret + 4);
        body_stream(body, ret);
        int32_t stream = *(int32_t *)(ret + 4);
        int closed = 0;
        for (;;) {
            uint8_t r[16] __attribute__((aligned(8)));
            input_read(stream, 1024, r);
            if (r[0] != 0) { closed = r[4] == 1; break; } // stream-error: 1 = closed (the end)
            put((const char *)(uintptr_t)*(uint32_t *)(r + 4), *(uint32_t *)(r + 8));
        }
        if (starts(path, path_len, "/pastend")) {
            uint8_t r[16] __attribute__((aligned(8)));
            input_read(stream, 1024, r); // read again after the end
            out_len = 0;
            puts_(r[0] != 0 && r[4] == 1 ? "closed again\n" : "not closed\n");
        } else if (!closed) {
            puts_("\n(read failed)\n");
        }
        input_drop(stream);
        incoming_body_drop(body);
        respond(outparam, 200, "text/plain", -1);
        return;
    }
    if (starts(path, path_len, "/headers")) {
        int32_t h = request_headers(request);
        fields_entries(h, ret);
        uint32_t *list = (uint32_t *)(uintptr_t)*(uint32_t *)ret;
        uint32_t count = *(uint32_t *)(ret + 4);
        for (uint32_t i = 0; i < count; i++) {
            put((const char *)(uintptr_t)list[i * 4], list[i * 4 + 1]);
            puts_(": ");
            put((const char *)(uintptr_t)list[i * 4 + 2], list[i * 4 + 3]);
            puts_("\n");
        }
        fields_drop(h);
        respond(outparam, 200, "text/plain", -1);
        return;
    }
    puts_("hello from a component: ");
    put(method, mlen);
    puts_(" ");
    put(path, path_len);
    puts_("\n");
    int32_t headers = fields_new();
    fields_append(headers, "x-outpost-sample", 16, "component", 9, ret);
    respond(outparam, starts(path, path_len, "/missing") ? 404 : 200, "text/plain; charset=utf-8", headers);
}
