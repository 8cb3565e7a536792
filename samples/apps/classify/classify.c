/*
 * classify.c -- Outpost's sample AI app: a WASI-NN (witx ABI) guest.
 *
 *   samples/apps/build.sh (clang --target=wasm32-wasi --sysroot=/usr -O2 -I sdk/c ...)
 *   outpost wasm run --model hadamard=samples/ai/hadamard.onnx samples/apps/classify/classify.wasm -- hadamard 7
 *
 * As an app (WAGI), GET /classify?class=K answers the same text for class K
 * (default 3) with the model the app declares as "hadamard" (samples/ai/classify.yaml).
 *
 * Usage as a command: classify.wasm [MODEL [CLASS]]
 *   MODEL       name the host registered the model under (default "hadamard"),
 *               used with load_by_name; if it ends in ".onnx" it is instead
 *               read as a file (WASI preopen needed) and passed to load()
 *   CLASS       0..9, which Hadamard template to feed (default 3)
 *
 * Loads the model by name, feeds f32 [1,1024] = row ROWS[CLASS] of the
 * 1024x1024 Sylvester-Hadamard matrix (entries +-1), computes, reads the
 * f32 [1,10] output and prints it with the argmax. With model.onnx from
 * build_model.py the argmax equals CLASS (exit code 0), else exit code 3.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wasi_nn.h"

#define N 1024
#define CLASSES 10
static const unsigned ROWS[CLASSES] = {1, 3, 5, 6, 9, 10, 12, 15, 17, 18};

static float input[N];
static float output[CLASSES];

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

static uint8_t *read_file(const char *path, uint32_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); return NULL; }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc(size > 0 ? (size_t)size : 1);
    if (!buf || fread(buf, 1, (size_t)size, f) != (size_t)size) { fclose(f); free(buf); return NULL; }
    fclose(f);
    *len = (uint32_t)size;
    return buf;
}

static int check(const char *what, int32_t err) {
    if (err != WASI_NN_ERRNO_SUCCESS) {
        fprintf(stderr, "%s failed: nn_errno %d\n", what, (int)err);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv) {
    const char *name = "hadamard";
    int cls = 3;
    if (getenv("GATEWAY_INTERFACE") != NULL) {
        /* A request: the class from the query string (class=K). */
        const char *query = getenv("QUERY_STRING");
        const char *at = query ? strstr(query, "class=") : NULL;
        if (at != NULL)
            cls = atoi(at + 6);
        if (cls < 0 || cls >= CLASSES) {
            printf("Status: 400\nContent-Type: text/plain\n\nclass must be 0..9\n");
            return 0;
        }
        printf("Content-Type: text/plain\n\n");
    } else {
        name = argc > 1 ? argv[1] : name;
        cls = argc > 2 ? atoi(argv[2]) : cls;
    }
    if (cls < 0 || cls >= CLASSES) {
        fprintf(stderr, "class must be 0..9\n");
        return 2;
    }
    for (unsigned i = 0; i < N; i++)
        input[i] = (__builtin_popcount(ROWS[cls] & i) & 1) ? -1.0f : 1.0f;

    wasi_nn_graph_t graph;
    if (ends_with(name, ".onnx")) {
        wasi_nn_graph_builder_t builder;
        builder.buf = read_file(name, &builder.len);
        if (!builder.buf)
            return 1;
        if (check("load", wasi_nn_load(&builder, 1, WASI_NN_GRAPH_ENCODING_ONNX,
                                       WASI_NN_EXECUTION_TARGET_CPU, &graph)))
            return 1;
        free((void *)builder.buf);
    } else if (check("load_by_name",
                     wasi_nn_load_by_name(name, (uint32_t)strlen(name), &graph))) {
        return 1;
    }

    wasi_nn_graph_execution_context_t ctx;
    if (check("init_execution_context", wasi_nn_init_execution_context(graph, &ctx)))
        return 1;

    static const uint32_t dims[2] = {1, N};
    wasi_nn_tensor_t tensor = {
        .dimensions = {dims, 2},
        .type = WASI_NN_TENSOR_TYPE_F32,
        .data = {(const uint8_t *)input, sizeof input},
    };
    if (check("set_input", wasi_nn_set_input(ctx, 0, &tensor)))
        return 1;
    if (check("compute", wasi_nn_compute(ctx)))
        return 1;

    wasi_nn_buffer_size_t written = 0;
    if (check("get_output",
              wasi_nn_get_output(ctx, 0, (uint8_t *)output, sizeof output, &written)))
        return 1;
    if (written != sizeof output) {
        fprintf(stderr, "get_output wrote %u bytes, expected %u\n",
                (unsigned)written, (unsigned)sizeof output);
        return 1;
    }

    int best = 0;
    for (int k = 0; k < CLASSES; k++) {
        printf("class %d: %.6f\n", k, output[k]);
        if (output[k] > output[best])
            best = k;
    }
    printf("argmax: %d (expected %d)\n", best, cls);
    return best == cls ? 0 : 3;
}
