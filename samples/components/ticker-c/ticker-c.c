/*
 * ticker-c: a wasi:cli/command component in C, for timer and topic triggers. An ordinary
 * C program (wasi-libc, main) made a component with the WASI preview 1 command adapter; it
 * also imports outpost:edge/publish (sdk/wit/outpost.wit) through the canonical ABI by hand.
 * Each run publishes "TRIGGER:PAYLOAD" (OUTPOST_TRIGGER, then the message it was run for, if
 * any) to the topic in $PUBLISH_TO (default "component-events"), and says so on stdout.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* outpost:edge/publish@0.1.0 publish: func(topic: string, payload: list<u8>) -> result<_, string> */
__attribute__((import_module("outpost:edge/publish@0.1.0"), import_name("publish")))
extern void outpost_edge_publish(const char *topic, size_t topic_len, const uint8_t *payload, size_t payload_len, uint8_t *ret);

/* Where the host puts a string it returns (the error message). */
__attribute__((export_name("cabi_realloc")))
void *cabi_realloc(void *old, size_t old_size, size_t align, size_t new_size) {
    (void)old_size;
    (void)align;
    return realloc(old, new_size);
}

int main(void) {
    const char *trigger = getenv("OUTPOST_TRIGGER");
    const char *topic = getenv("PUBLISH_TO");
    if (topic == NULL || *topic == '\0') topic = "component-events";
    char message[4096];
    int n = snprintf(message, sizeof message, "%s:", trigger ? trigger : "none");
    n += (int)fread(message + n, 1, sizeof message - (size_t)n, stdin);

    uint8_t ret[16] __attribute__((aligned(8)));
    outpost_edge_publish(topic, strlen(topic), (const uint8_t *)message, (size_t)n, ret);
    if (ret[0] != 0) {
        fprintf(stderr, "publish to %s refused: %.*s\n", topic, *(int32_t *)(ret + 8), (const char *)(uintptr_t)*(int32_t *)(ret + 4));
        return 1;
    }
    printf("published %d bytes to %s\n", n, topic);
    return 0;
}
