/*
 * sleep.c - sleeping through poll_oneoff, timed with clock_time_get.
 *
 * Usage: sleep.wasm [MS]     (MS defaults to 50)
 *
 * Every path below is a poll_oneoff call with one clock subscription in
 * wasi-libc: nanosleep and usleep (relative, CLOCK_REALTIME),
 * clock_nanosleep on CLOCK_MONOTONIC (relative), clock_nanosleep on
 * CLOCK_REALTIME with TIMER_ABSTIME (SUBSCRIPTION_CLOCK_ABSTIME), and poll()
 * with no fds and a timeout. Each is timed with clock_gettime(CLOCK_MONOTONIC)
 * and prints only whether at least MS milliseconds went by (less 1 ms of
 * slack), never the time itself. sched_yield is called too. Exit 0 when every
 * sleep was long enough.
 *
 * The 1 ms of slack is for node:wasi 20 (uvwasi), whose sleeps are libuv
 * timers on a millisecond clock: they wake up to ~0.9 ms early. The absolute
 * sleep is skipped when MS < 10: uvwasi turns a deadline into a relative
 * timeout by subtracting the REALTIME clock (whatever the subscription's
 * clock), so a deadline already past (unsigned underflow) or one on
 * CLOCK_MONOTONIC makes it sleep forever.
 */
#include <poll.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

static int failures;

#define SLACK_NS 1000000LL

static long long now_ns(clockid_t clock)
{
    struct timespec ts;
    if (clock_gettime(clock, &ts) != 0)
        return -1;
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* "what: slept at least MS ms (1 ms slack): yes|no" (or the errno name if the call failed). */
static void report(const char *what, int rc, long long start, long ms)
{
    long long elapsed = now_ns(CLOCK_MONOTONIC) - start;
    if (rc != 0) {
        printf("%s: %s\n", what, errno_name(errno));
        failures++;
        return;
    }
    int enough = elapsed >= (long long)ms * 1000000LL - SLACK_NS;
    printf("%s: slept at least %ld ms (1 ms slack): %s\n", what, ms, enough ? "yes" : "no");
    if (!enough)
        failures++;
}

int main(int argc, char **argv)
{
    wagi_header();
    long ms = argc > 1 ? strtol(argv[1], NULL, 10) : 50;
    if (ms < 0)
        ms = 0;
    struct timespec req = {ms / 1000, (ms % 1000) * 1000000L};

    long long r0 = now_ns(CLOCK_REALTIME);
    long long start = now_ns(CLOCK_MONOTONIC);
    printf("clocks readable: %s\n", r0 > 0 && start >= 0 ? "yes" : "no");

    start = now_ns(CLOCK_MONOTONIC);
    report("nanosleep", nanosleep(&req, NULL), start, ms);

    start = now_ns(CLOCK_MONOTONIC);
    report("usleep", usleep((useconds_t)(ms * 1000)), start, ms);

    start = now_ns(CLOCK_MONOTONIC);
    errno = clock_nanosleep(CLOCK_MONOTONIC, 0, &req, NULL); /* returns the error, not -1 */
    report("clock_nanosleep monotonic", errno ? -1 : 0, start, ms);

    if (ms >= 10) {
        long long deadline = now_ns(CLOCK_REALTIME) + (long long)ms * 1000000LL;
        struct timespec abs = {(time_t)(deadline / 1000000000LL), (long)(deadline % 1000000000LL)};
        int rc = clock_nanosleep(CLOCK_REALTIME, TIMER_ABSTIME, &abs, NULL);
        if (rc != 0) {
            printf("clock_nanosleep realtime abstime: %s\n", errno_name(rc));
            failures++;
        } else {
            int reached = now_ns(CLOCK_REALTIME) >= deadline - SLACK_NS;
            printf("clock_nanosleep realtime abstime: reached the deadline (1 ms slack): %s\n", reached ? "yes" : "no");
            if (!reached)
                failures++;
        }
    } else {
        printf("clock_nanosleep realtime abstime: skipped (MS < 10)\n");
    }

    start = now_ns(CLOCK_MONOTONIC);
    int n = poll(NULL, 0, (int)ms);
    report("poll timeout", n < 0 ? -1 : 0, start, ms);

    printf("sched_yield: %s\n", sched_yield() == 0 ? "ok" : errno_name(errno));

    long long r1 = now_ns(CLOCK_REALTIME);
    /* at least four of the sleeps above, less their slack */
    long long want = 4LL * ms * 1000000LL - 4 * SLACK_NS;
    int advanced = r1 - r0 >= (want > 0 ? want : 0);
    printf("realtime advanced too: %s\n", advanced ? "yes" : "no");
    if (!advanced)
        failures++;

    if (failures == 0)
        printf("sleep: all ok\n");
    else
        printf("sleep: %d unexpected\n", failures);
    return failures == 0 ? 0 : 1;
}
