/*
 * nntypes.c - WASI-NN tensors of every witx type, in and out.
 *
 * Usage: nntypes.wasm TYPE [ROWS]   TYPE: f16 f32 f64 u8 i32 i64; ROWS: the first dimension (default 2)
 *
 * Loads the model declared as "add" (Y = X + X over a TYPE tensor [rows, 3], rows left open by
 * the model), feeds 1, 2, 3, ... and prints Y's elements: "2 4 6 ..." when the host carries the
 * type both ways. f16 is printed as its bit patterns (0x4000 is 2.0).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wasi_nn.h"

static unsigned char in[6 * 3 * 8];
static unsigned char out[6 * 3 * 8];

int main(int argc, char **argv)
{
    const char *type = argc > 1 ? argv[1] : "f32";
    uint32_t rows = argc > 2 ? (uint32_t)atoi(argv[2]) : 2;
    if (rows < 1 || rows > 6)
        return 2;
    uint32_t n = rows * 3;
    static const uint16_t half[18] = {0x3C00, 0x4000, 0x4200, 0x4400, 0x4500, 0x4600, 0x4700, 0x4800, 0x4880,
                                      0x4900, 0x4980, 0x4A00, 0x4A80, 0x4B00, 0x4B80, 0x4C00, 0x4C40, 0x4C80};
    wasi_nn_tensor_type_t t;
    uint32_t size;
    for (uint32_t i = 0; i < n; i++) {
        if (!strcmp(type, "f16")) { t = WASI_NN_TENSOR_TYPE_F16; size = 2; memcpy(in + i * 2, &half[i], 2); }
        else if (!strcmp(type, "f32")) { t = WASI_NN_TENSOR_TYPE_F32; size = 4; float v = (float)(i + 1); memcpy(in + i * 4, &v, 4); }
        else if (!strcmp(type, "f64")) { t = WASI_NN_TENSOR_TYPE_F64; size = 8; double v = i + 1; memcpy(in + i * 8, &v, 8); }
        else if (!strcmp(type, "u8")) { t = WASI_NN_TENSOR_TYPE_U8; size = 1; in[i] = (unsigned char)(i + 1); }
        else if (!strcmp(type, "i32")) { t = WASI_NN_TENSOR_TYPE_I32; size = 4; int32_t v = (int32_t)i + 1; memcpy(in + i * 4, &v, 4); }
        else if (!strcmp(type, "i64")) { t = WASI_NN_TENSOR_TYPE_I64; size = 8; int64_t v = (int64_t)i + 1; memcpy(in + i * 8, &v, 8); }
        else return 2;
    }

    wasi_nn_graph_t graph;
    wasi_nn_graph_execution_context_t ctx;
    uint32_t dims[2] = {rows, 3};
    wasi_nn_tensor_t tensor = {{dims, 2}, t, {in, n * size}};
    wasi_nn_buffer_size_t written = 0;
    int e;
    if ((e = wasi_nn_load_by_name("add", 3, &graph)) || (e = wasi_nn_init_execution_context(graph, &ctx))
        || (e = wasi_nn_set_input(ctx, 0, &tensor)) || (e = wasi_nn_compute(ctx))
        || (e = wasi_nn_get_output(ctx, 0, out, sizeof out, &written))) {
        printf("%s: nn_errno %d\n", type, e);
        return 1;
    }

    printf("%s [%u, 3] -> %u bytes:", type, (unsigned)rows, (unsigned)written);
    for (uint32_t i = 0; i < written / size; i++) {
        if (t == WASI_NN_TENSOR_TYPE_F16) { uint16_t v; memcpy(&v, out + i * 2, 2); printf(" 0x%04x", v); }
        else if (t == WASI_NN_TENSOR_TYPE_F32) { float v; memcpy(&v, out + i * 4, 4); printf(" %g", v); }
        else if (t == WASI_NN_TENSOR_TYPE_F64) { double v; memcpy(&v, out + i * 8, 8); printf(" %g", v); }
        else if (t == WASI_NN_TENSOR_TYPE_U8) printf(" %u", out[i]);
        else if (t == WASI_NN_TENSOR_TYPE_I32) { int32_t v; memcpy(&v, out + i * 4, 4); printf(" %d", (int)v); }
        else { int64_t v; memcpy(&v, out + i * 8, 8); printf(" %lld", (long long)v); }
    }
    printf("\n");
    return 0;
}
