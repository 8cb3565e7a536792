/*
 * outpost.h - write Outpost apps in C.
 *
 * An app is a WASI command (main) built with clang --target=wasm32-wasi. For HTTP it
 * follows WAGI: the request is in the environment and on stdin, the response goes to
 * stdout as CGI headers, a blank line and the body; outpost_respond() does that for you.
 * Timer and topic runs get OUTPOST_TRIGGER ("timer" or "topic"), OUTPOST_TOPIC and
 * OUTPOST_PUBLISHER in the environment and a topic message's payload on stdin.
 *
 * Host functions live in import module "outpost". Each needs a capability in the app's
 * manifest (spec.capabilities); a module importing one it was not granted is refused at
 * `outpost apply`. Only the functions you call are imported.
 *
 *   log         outpost_log                              capability: log
 *   config      outpost_config_get                       capability: config
 *   kv          outpost_kv_get / _set / _delete          capability: kv
 *   publish     outpost_publish                          capability: publish
 *   clock       outpost_now_ms                           capability: clock
 *   http-out    outpost_http_request / _response_*       capability: http-out: [HOST, ...]
 */
#ifndef OUTPOST_H
#define OUTPOST_H

#include <ctype.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OUTPOST_IMPORT(name) __attribute__((import_module("outpost"), import_name(#name)))

/* Raw host functions: strings and bytes as (pointer, length). Reads return the value's
 * full length, or -1 when absent; a value longer than the buffer is not written. */
OUTPOST_IMPORT(log) void outpost_log_raw(int32_t level, const char *msg, size_t len);
OUTPOST_IMPORT(config_get) int32_t outpost_config_get_raw(const char *key, size_t key_len, char *buf, size_t cap);
OUTPOST_IMPORT(kv_get) int32_t outpost_kv_get_raw(const char *bucket, size_t bucket_len, const char *key, size_t key_len, void *buf, size_t cap);
OUTPOST_IMPORT(kv_set) int32_t outpost_kv_set_raw(const char *bucket, size_t bucket_len, const char *key, size_t key_len, const void *value, size_t len);
OUTPOST_IMPORT(kv_delete) int32_t outpost_kv_delete_raw(const char *bucket, size_t bucket_len, const char *key, size_t key_len);
OUTPOST_IMPORT(publish) int32_t outpost_publish_raw(const char *topic, size_t topic_len, const void *data, size_t len);
OUTPOST_IMPORT(now_ms) int64_t outpost_now_ms(void);
OUTPOST_IMPORT(http_request) int32_t outpost_http_request_raw(const char *method, size_t method_len, const char *url, size_t url_len,
                                                            const char *headers, size_t headers_len, const void *body, size_t body_len);
OUTPOST_IMPORT(http_response_body) int32_t outpost_http_response_body_raw(void *buf, size_t cap);
OUTPOST_IMPORT(http_response_header) int32_t outpost_http_response_header_raw(const char *name, size_t name_len, char *buf, size_t cap);

enum { OUTPOST_DEBUG = 0, OUTPOST_INFO = 1, OUTPOST_WARN = 2, OUTPOST_ERROR = 3 };

static inline void outpost_log(int level, const char *msg) { outpost_log_raw(level, msg, strlen(msg)); }

/* Copies a config value (from the ConfigSets that target the node) into buf as a
 * NUL-terminated string. Returns its length, -1 when unset, or -2 when buf is too small. */
static inline int outpost_config_get(const char *key, char *buf, size_t cap) {
    int32_t n = outpost_config_get_raw(key, strlen(key), buf, cap > 0 ? cap - 1 : 0);
    if (n < 0) return -1;
    if ((size_t)n >= cap) return -2;
    buf[n] = '\0';
    return n;
}

/* Key-value buckets, durable on the node (and synced as the Bucket resource of that
 * name says). kv_get returns the value's length (-1 when absent); a value longer than
 * cap is not copied. kv_set returns 0, or -1 when the bucket is cloud-to-edge (read-only
 * at the edge). */
static inline int outpost_kv_get(const char *bucket, const char *key, void *buf, size_t cap) {
    return outpost_kv_get_raw(bucket, strlen(bucket), key, strlen(key), buf, cap);
}
static inline int outpost_kv_set(const char *bucket, const char *key, const void *value, size_t len) {
    return outpost_kv_set_raw(bucket, strlen(bucket), key, strlen(key), value, len);
}
static inline int outpost_kv_set_str(const char *bucket, const char *key, const char *value) {
    return outpost_kv_set(bucket, key, value, strlen(value));
}
/* Returns 1 when the key existed, 0 when it did not, -1 when the bucket is read-only here. */
static inline int outpost_kv_delete(const char *bucket, const char *key) {
    return outpost_kv_delete_raw(bucket, strlen(bucket), key, strlen(key));
}

/* Appends a record to the node's durable outbox (shipped to the cloud, and delivered to
 * local apps whose topic trigger names this topic). Returns 0 when stored. */
static inline int outpost_publish(const char *topic, const void *data, size_t len) {
    return outpost_publish_raw(topic, strlen(topic), data, len);
}

/* Outbound HTTP to a host on the app's allow-list (`- http-out: [temps.mesh, api.example.com]`
 * in spec.capabilities). NAME.mesh is mesh service NAME: http://temps.mesh/reading reaches one
 * endpoint of service temps (on this node, a node of its site, or through the server), and an
 * idempotent request is retried once on another endpoint when the first cannot be reached.
 * headers: "Name: value\n" lines, or NULL. The call waits for the response, within what is left
 * of the app's timeout. Returns the response status, or -1 when there is none (a host not on
 * the list, no endpoint, a timeout, a body over the app's maxResponseBytes): the reason is
 * written to the app's log. */
static inline int outpost_http_request(const char *method, const char *url, const char *headers, const void *body, size_t len) {
    return outpost_http_request_raw(method, strlen(method), url, strlen(url), headers ? headers : "", headers ? strlen(headers) : 0, body, len);
}
static inline int outpost_http_get(const char *url) { return outpost_http_request("GET", url, NULL, NULL, 0); }

/* The last response's body: copied into buf when it fits; returns its full length, or -1 when
 * there is no response. */
static inline int outpost_http_response_body(void *buf, size_t cap) { return outpost_http_response_body_raw(buf, cap); }

/* A header of the last response as a NUL-terminated string: its length, -1 when absent, -2
 * when buf is too small. */
static inline int outpost_http_response_header(const char *name, char *buf, size_t cap) {
    int32_t n = outpost_http_response_header_raw(name, strlen(name), buf, cap > 0 ? cap - 1 : 0);
    if (n < 0) return -1;
    if ((size_t)n >= cap) return -2;
    buf[n] = '\0';
    return n;
}

/* ---- WAGI helpers ---------------------------------------------------------------- */

static inline const char *outpost_env(const char *name) {
    const char *value = getenv(name);
    return value ? value : "";
}

/* "GET", "POST", ... */
static inline const char *outpost_request_method(void) { return outpost_env("REQUEST_METHOD"); }

/* The path after the app's route prefix ("" for the route itself). */
static inline const char *outpost_request_path(void) { return outpost_env("PATH_INFO"); }

static inline const char *outpost_request_query(void) { return outpost_env("QUERY_STRING"); }

/* A request header by its HTTP name ("User-Agent"), or NULL. */
static inline const char *outpost_request_header(const char *name) {
    char key[256] = "HTTP_";
    size_t i = 5;
    for (; *name && i < sizeof key - 1; name++, i++) key[i] = *name == '-' ? '_' : (char)toupper((unsigned char)*name);
    key[i] = '\0';
    if (strcmp(key, "HTTP_CONTENT_TYPE") == 0) return getenv("CONTENT_TYPE");
    return getenv(key);
}

/* Reads the request body (or a topic message) into buf; returns its length (at most cap). */
static inline size_t outpost_request_body(void *buf, size_t cap) {
    size_t total = 0, n;
    while (total < cap && (n = fread((char *)buf + total, 1, cap - total, stdin)) > 0) total += n;
    return total;
}

/* Writes a complete response: status, content type, body. */
static inline void outpost_respond(int status, const char *content_type, const void *body, size_t len) {
    printf("Status: %d\nContent-Type: %s\n\n", status, content_type);
    fwrite(body, 1, len, stdout);
    fflush(stdout);
}

static inline void outpost_respond_text(int status, const char *text) {
    outpost_respond(status, "text/plain; charset=utf-8", text, strlen(text));
}

#endif /* OUTPOST_H */
