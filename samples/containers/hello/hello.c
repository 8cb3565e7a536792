/*
 * The container sample: a static HTTP/1.1 server with no dependencies, so its image is one
 * small layer (samples/containers/build.sh). It listens on $PORT (8080 by default) and answers
 *   GET /            200 "$GREETING from container on $OUTPOST_NODE_NAME (revision N)"
 *   GET /healthz     200 "ok" (the readiness probe)
 *   GET /fail        500 (to fail a rollout's error-rate gate)
 *   GET /exit?code=N the process exits with N (to test restarts and crash loops)
 *   GET /alloc?mib=N touches N MiB and keeps it (to test limits.memory)
 *   GET /write?path=P creates file P: 201, or 403 with the reason (to test the read-only root)
 * and exits 0 on SIGTERM. With $ALLOC_MIB set it first touches that many MiB (a server that
 * needs more memory than its limit at start, to test OOM kills of the container's main process). Each connection is served by a forked child, keep-alive included.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static const char *env_or(const char *name, const char *fallback)
{
    const char *value = getenv(name);
    return value && *value ? value : fallback;
}

static void on_term(int sig)
{
    (void)sig;
    _exit(0);
}

static int query_int(const char *target, const char *key)
{
    const char *at = strstr(target, key);
    return at ? atoi(at + strlen(key)) : 0;
}

static void reply(int fd, int status, const char *reason, const char *body)
{
    char head[256];
    int length = snprintf(head, sizeof head,
        "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n\r\n", status, reason, strlen(body));
    if (write(fd, head, (size_t)length) < 0 || write(fd, body, strlen(body)) < 0) {
        _exit(0);
    }
}

static int exit_pipe[2];

/* A child asked the whole server to exit with a code: it is in the pipe. */
static void on_exit_request(int sig)
{
    (void)sig;
    unsigned char code = 1;
    if (read(exit_pipe[0], &code, 1) != 1) {
        code = 1;
    }
    _exit(code);
}

static void serve(int fd)
{
    static char buffer[16384];
    size_t used = 0;
    for (;;) {
        char *end;
        while (!(end = memmem(buffer, used, "\r\n\r\n", 4))) {
            if (used == sizeof buffer) {
                return;
            }
            ssize_t got = read(fd, buffer + used, sizeof buffer - used);
            if (got <= 0) {
                return;
            }
            used += (size_t)got;
        }
        char target[1024] = "";
        sscanf(buffer, "%*s %1023s", target);
        if (strncmp(target, "/healthz", 8) == 0) {
            reply(fd, 200, "OK", "ok\n");
        } else if (strncmp(target, "/fail", 5) == 0) {
            reply(fd, 500, "Internal Server Error", "failing on purpose\n");
        } else if (strncmp(target, "/exit", 5) == 0) {
            int code = query_int(target, "code=");
            fprintf(stderr, "exiting with %d as asked\n", code);
            reply(fd, 200, "OK", "exiting\n");
            unsigned char byte = (unsigned char)code;
            if (write(exit_pipe[1], &byte, 1) == 1) {
                kill(getppid(), SIGUSR1);
            }
            _exit(0);
        } else if (strncmp(target, "/write?path=", 12) == 0) {
            int file = open(target + 12, O_WRONLY | O_CREAT | O_TRUNC, 0644);
            char body[512];
            snprintf(body, sizeof body, "%.200s: %s\n", target + 12, file < 0 ? strerror(errno) : "written");
            if (file >= 0) {
                close(file);
            }
            reply(fd, file < 0 ? 403 : 201, file < 0 ? "Forbidden" : "Created", body);
        } else if (strncmp(target, "/alloc", 6) == 0) {
            size_t bytes = (size_t)query_int(target, "mib=") << 20;
            char *block = malloc(bytes);
            for (size_t i = 0; block && i < bytes; i += 4096) {
                block[i] = 1;
            }
            reply(fd, block ? 200 : 507, block ? "OK" : "Insufficient Storage", block ? "allocated\n" : "malloc failed\n");
        } else {
            char body[512];
            snprintf(body, sizeof body, "%s from container on %s (revision %s)\n", env_or("GREETING", "hello"),
                env_or("OUTPOST_NODE_NAME", "?"), env_or("OUTPOST_APP_GENERATION", "?"));
            reply(fd, 200, "OK", body);
        }
        size_t request = (size_t)(end + 4 - buffer);
        memmove(buffer, buffer + request, used - request);
        used -= request;
    }
}

int main(void)
{
    int port = atoi(env_or("PORT", "8080"));
    size_t hog = (size_t)atoi(env_or("ALLOC_MIB", "0")) << 20;
    char *held = hog ? malloc(hog) : NULL;
    for (size_t i = 0; held && i < hog; i += 4096) {
        held[i] = 1;
    }
    signal(SIGTERM, on_term);
    signal(SIGINT, on_term);
    signal(SIGPIPE, SIG_IGN);
    struct sigaction children = { .sa_handler = SIG_DFL, .sa_flags = SA_NOCLDWAIT };
    sigaction(SIGCHLD, &children, NULL);
    if (pipe(exit_pipe) < 0) {
        perror("pipe");
        return 2;
    }
    signal(SIGUSR1, on_exit_request);

    int listener = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in address = { .sin_family = AF_INET, .sin_port = htons((unsigned short)port), .sin_addr.s_addr = htonl(INADDR_ANY) };
    if (listener < 0 || bind(listener, (struct sockaddr *)&address, sizeof address) < 0 || listen(listener, 128) < 0) {
        perror("listen");
        return 2;
    }
    fprintf(stderr, "listening on :%d\n", port);
    for (;;) {
        int fd = accept(listener, NULL, NULL);
        if (fd < 0) {
            continue;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        pid_t child = fork();
        if (child == 0) {
            close(listener);
            serve(fd);
            _exit(0);
        }
        close(fd);
    }
}
