// sensor: a node-local sensor loop. Every timer tick it takes a reading, keeps the last
// one and a count in the "sensor" bucket, and publishes it to the "readings" topic (the
// outbox ships it to the cloud). GET /sensor answers with the last reading.
#include "outpost.h"

static int reading_tenths(int64_t now_ms, long count) {
    // A stand-in for a real probe: a smooth-ish wave around 21.5 C.
    int phase = (int)((now_ms / 1000 + count * 7) % 60);
    return 215 + (phase < 30 ? phase : 60 - phase) - 15;
}

int main(void) {
    char last[128];
    const char *trigger = outpost_env("OUTPOST_TRIGGER");

    if (strcmp(trigger, "timer") == 0) {
        char count_text[32] = "0";
        int n = outpost_kv_get("sensor", "count", count_text, sizeof count_text - 1);
        count_text[n > 0 ? n : 1] = '\0';
        long count = strtol(count_text, NULL, 10) + 1;

        int64_t now = outpost_now_ms();
        int tenths = reading_tenths(now, count);
        int len = snprintf(last, sizeof last, "{\"seq\":%ld,\"at\":%lld,\"celsius\":%d.%d}",
                           count, (long long)now, tenths / 10, tenths % 10);

        snprintf(count_text, sizeof count_text, "%ld", count);
        outpost_kv_set_str("sensor", "count", count_text);
        outpost_kv_set("sensor", "last", last, (size_t)len);
        if (outpost_publish("readings", last, (size_t)len) != 0) {
            outpost_log(OUTPOST_WARN, "outbox refused a reading");
        }
        return 0;
    }

    int n = outpost_kv_get("sensor", "last", last, sizeof last - 1);
    if (n < 0) {
        outpost_respond_text(404, "no reading yet\n");
        return 0;
    }
    last[n] = '\0';
    outpost_respond(200, "application/json", last, (size_t)n);
    return 0;
}
