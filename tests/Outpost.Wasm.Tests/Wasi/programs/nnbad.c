/*
 * nnbad.c - WASI-NN calls that must fail, each with the witx nn_errno the spec gives.
 *
 * Usage: nnbad.wasm [MODEL]   (MODEL: the name the model is declared under, default "hadamard";
 *                             a model with input f32 [1,1024] and output f32 [1,10])
 *
 * One line per attempt, "WHAT: errno N"; then one good inference ("good: argmax K"),
 * to show the failures broke nothing. Needs the host's WASI-NN (capability nn).
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "wasi_nn.h"

static float input[1024];
static float output[10];

int main(int argc, char **argv)
{
    const char *name = argc > 1 ? argv[1] : "hadamard";
    for (int i = 0; i < 1024; i++)
        input[i] = (__builtin_popcount(5u & (unsigned)i) & 1) ? -1.0f : 1.0f;

    wasi_nn_graph_t graph;
    printf("load_by_name undeclared: errno %d\n", (int)wasi_nn_load_by_name("nosuch", 6, &graph));

    static const uint8_t junk[] = "this is not an onnx model at all";
    wasi_nn_graph_builder_t builder = {junk, sizeof junk};
    printf("load of bytes that are not ONNX: errno %d\n",
           (int)wasi_nn_load(&builder, 1, WASI_NN_GRAPH_ENCODING_ONNX, WASI_NN_EXECUTION_TARGET_CPU, &graph));
    printf("load as TensorFlow: errno %d\n",
           (int)wasi_nn_load(&builder, 1, WASI_NN_GRAPH_ENCODING_TENSORFLOW, WASI_NN_EXECUTION_TARGET_CPU, &graph));
    printf("load for a GPU: errno %d\n",
           (int)wasi_nn_load(&builder, 1, WASI_NN_GRAPH_ENCODING_ONNX, WASI_NN_EXECUTION_TARGET_GPU, &graph));

    int e = wasi_nn_load_by_name(name, (uint32_t)strlen(name), &graph);
    printf("load_by_name %s: errno %d\n", name, e);
    if (e != 0)
        return 1;

    wasi_nn_graph_execution_context_t ctx;
    printf("init_execution_context of graph 99: errno %d\n", (int)wasi_nn_init_execution_context(99, &ctx));
    e = wasi_nn_init_execution_context(graph, &ctx);
    printf("init_execution_context: errno %d\n", e);
    if (e != 0)
        return 1;

    printf("compute before set_input: errno %d\n", (int)wasi_nn_compute(ctx));

    static const uint32_t wrong_dims[2] = {1, 1000};
    wasi_nn_tensor_t wrong_shape = {{wrong_dims, 2}, WASI_NN_TENSOR_TYPE_F32, {(const uint8_t *)input, 1000 * 4}};
    printf("set_input of shape [1, 1000]: errno %d\n", (int)wasi_nn_set_input(ctx, 0, &wrong_shape));

    static const uint32_t dims[2] = {1, 1024};
    wasi_nn_tensor_t wrong_type = {{dims, 2}, WASI_NN_TENSOR_TYPE_I32, {(const uint8_t *)input, sizeof input}};
    printf("set_input of type i32: errno %d\n", (int)wasi_nn_set_input(ctx, 0, &wrong_type));

    wasi_nn_tensor_t short_data = {{dims, 2}, WASI_NN_TENSOR_TYPE_F32, {(const uint8_t *)input, 100}};
    printf("set_input with 100 bytes of data: errno %d\n", (int)wasi_nn_set_input(ctx, 0, &short_data));

    wasi_nn_tensor_t outside = {{dims, 2}, WASI_NN_TENSOR_TYPE_F32, {(const uint8_t *)0x7ffffff0, sizeof input}};
    printf("set_input with data outside memory: errno %d\n", (int)wasi_nn_set_input(ctx, 0, &outside));
    printf("set_input with the tensor outside memory: errno %d\n", (int)wasi_nn_set_input(ctx, 0, (const wasi_nn_tensor_t *)0x7ffffff0));
    printf("set_input of input 1: errno %d\n", (int)wasi_nn_set_input(ctx, 1, &wrong_shape));

    wasi_nn_tensor_t good = {{dims, 2}, WASI_NN_TENSOR_TYPE_F32, {(const uint8_t *)input, sizeof input}};
    printf("set_input: errno %d\n", (int)wasi_nn_set_input(ctx, 0, &good));
    printf("compute: errno %d\n", (int)wasi_nn_compute(ctx));

    wasi_nn_buffer_size_t written = 0;
    printf("get_output into 16 bytes: errno %d\n", (int)wasi_nn_get_output(ctx, 0, (uint8_t *)output, 16, &written));
    printf("get_output of output 3: errno %d\n", (int)wasi_nn_get_output(ctx, 3, (uint8_t *)output, sizeof output, &written));
    printf("get_output outside memory: errno %d\n", (int)wasi_nn_get_output(ctx, 0, (uint8_t *)0x7ffffff0, sizeof output, &written));
    e = wasi_nn_get_output(ctx, 0, (uint8_t *)output, sizeof output, &written);
    int best = 0;
    for (int k = 1; k < 10; k++)
        if (output[k] > output[best])
            best = k;
    printf("good: errno %d, %u bytes, argmax %d\n", e, (unsigned)written, best);
    return 0;
}
