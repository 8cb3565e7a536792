/*
 * wasi_nn.h -- guest-side C bindings for the legacy WITX ABI of wasi-nn
 * (import module "wasi_ephemeral_nn"), as implemented by Wasmtime's
 * `wasmtime-wasi-nn` crate (crates/wasi-nn/witx/wasi-nn.witx, identical to
 * WebAssembly/wasi-nn:wasi-nn.witx) and as called by the Rust `wasi-nn`
 * crate 0.6.0 (rust/src/generated.rs).
 *
 * Lowering rules (wasm32, all values little-endian):
 *   - every function returns an i32 nn_errno (0 = success);
 *   - a successful result value (graph, context, byte count) is written as a
 *     u32 through an extra out-pointer passed as the LAST parameter;
 *   - list<T>/string arguments are passed as (ptr i32, len i32) pairs,
 *     where len counts elements (bytes for strings);
 *   - a record argument (tensor) is passed by pointer;
 *   - u8/u16 enums and handles are passed as i32.
 */
#ifndef WASI_NN_H
#define WASI_NN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef uint16_t wasi_nn_errno_t;           /* (enum (@witx tag u16)) */
#define WASI_NN_ERRNO_SUCCESS               0
#define WASI_NN_ERRNO_INVALID_ARGUMENT      1
#define WASI_NN_ERRNO_INVALID_ENCODING      2
#define WASI_NN_ERRNO_MISSING_MEMORY        3
#define WASI_NN_ERRNO_BUSY                  4
#define WASI_NN_ERRNO_RUNTIME_ERROR         5
#define WASI_NN_ERRNO_UNSUPPORTED_OPERATION 6
#define WASI_NN_ERRNO_TOO_LARGE             7
#define WASI_NN_ERRNO_NOT_FOUND             8

typedef uint8_t wasi_nn_tensor_type_t;      /* (enum (@witx tag u8)) */
#define WASI_NN_TENSOR_TYPE_F16 0
#define WASI_NN_TENSOR_TYPE_F32 1
#define WASI_NN_TENSOR_TYPE_F64 2
#define WASI_NN_TENSOR_TYPE_U8  3
#define WASI_NN_TENSOR_TYPE_I32 4
#define WASI_NN_TENSOR_TYPE_I64 5

typedef uint8_t wasi_nn_graph_encoding_t;   /* (enum (@witx tag u8)) */
#define WASI_NN_GRAPH_ENCODING_OPENVINO       0
#define WASI_NN_GRAPH_ENCODING_ONNX           1
#define WASI_NN_GRAPH_ENCODING_TENSORFLOW     2
#define WASI_NN_GRAPH_ENCODING_PYTORCH        3
#define WASI_NN_GRAPH_ENCODING_TENSORFLOWLITE 4
#define WASI_NN_GRAPH_ENCODING_AUTODETECT     5

typedef uint8_t wasi_nn_execution_target_t; /* (enum (@witx tag u8)) */
#define WASI_NN_EXECUTION_TARGET_CPU 0
#define WASI_NN_EXECUTION_TARGET_GPU 1
#define WASI_NN_EXECUTION_TARGET_TPU 2

typedef uint32_t wasi_nn_graph_t;                   /* (handle) */
typedef uint32_t wasi_nn_graph_execution_context_t; /* (handle) */
typedef uint32_t wasi_nn_buffer_size_t;

/* $tensor_dimensions = (list u32) */
typedef struct {
    const uint32_t *buf;  /* offset 0 */
    uint32_t len;         /* offset 4: number of dimensions */
} wasi_nn_tensor_dimensions_t;

/* $tensor_data = (list u8) */
typedef struct {
    const uint8_t *buf;   /* offset 0 */
    uint32_t len;         /* offset 4: byte length */
} wasi_nn_tensor_data_t;

/* $tensor record: size 20, align 4 on wasm32 */
typedef struct {
    wasi_nn_tensor_dimensions_t dimensions; /* offset 0 (ptr), 4 (len) */
    wasi_nn_tensor_type_t type;             /* offset 8 (u8), 3 bytes padding */
    wasi_nn_tensor_data_t data;             /* offset 12 (ptr), 16 (len) */
} wasi_nn_tensor_t;

/* $graph_builder = (list u8): 8 bytes, align 4 */
typedef struct {
    const uint8_t *buf;
    uint32_t len;
} wasi_nn_graph_builder_t;

#if defined(__wasm32__)
_Static_assert(sizeof(wasi_nn_tensor_t) == 20, "tensor size");
_Static_assert(offsetof(wasi_nn_tensor_t, type) == 8, "tensor.type offset");
_Static_assert(offsetof(wasi_nn_tensor_t, data) == 12, "tensor.data offset");
_Static_assert(sizeof(wasi_nn_graph_builder_t) == 8, "graph_builder size");
#endif

#define WASI_NN_IMPORT(name) \
    __attribute__((import_module("wasi_ephemeral_nn"), import_name(name)))

/* load: (i32 builders_ptr, i32 builders_len, i32 encoding, i32 target,
 *        i32 graph_out_ptr) -> i32 errno
 * builders_ptr points at builders_len wasi_nn_graph_builder_t entries. */
WASI_NN_IMPORT("load")
int32_t wasi_nn_load(const wasi_nn_graph_builder_t *builders, uint32_t builders_len,
                     uint32_t encoding, uint32_t target, wasi_nn_graph_t *graph_out);

/* load_by_name: (i32 name_ptr, i32 name_len, i32 graph_out_ptr) -> i32 errno
 * name is UTF-8, not NUL-terminated (len excludes any NUL). */
WASI_NN_IMPORT("load_by_name")
int32_t wasi_nn_load_by_name(const char *name, uint32_t name_len,
                             wasi_nn_graph_t *graph_out);

/* init_execution_context: (i32 graph, i32 ctx_out_ptr) -> i32 errno */
WASI_NN_IMPORT("init_execution_context")
int32_t wasi_nn_init_execution_context(wasi_nn_graph_t graph,
                                       wasi_nn_graph_execution_context_t *ctx_out);

/* set_input: (i32 ctx, i32 index, i32 tensor_ptr) -> i32 errno */
WASI_NN_IMPORT("set_input")
int32_t wasi_nn_set_input(wasi_nn_graph_execution_context_t ctx, uint32_t index,
                          const wasi_nn_tensor_t *tensor);

/* compute: (i32 ctx) -> i32 errno */
WASI_NN_IMPORT("compute")
int32_t wasi_nn_compute(wasi_nn_graph_execution_context_t ctx);

/* get_output: (i32 ctx, i32 index, i32 out_buf_ptr, i32 out_buf_max_size,
 *              i32 bytes_written_out_ptr) -> i32 errno
 * Copies the raw little-endian output tensor bytes into out_buf and writes
 * the byte count (u32) to *bytes_written. Wasmtime returns TOO_LARGE (7) if
 * the tensor does not fit in out_buf_max_size. */
WASI_NN_IMPORT("get_output")
int32_t wasi_nn_get_output(wasi_nn_graph_execution_context_t ctx, uint32_t index,
                           uint8_t *out_buf, wasi_nn_buffer_size_t out_buf_max_size,
                           wasi_nn_buffer_size_t *bytes_written);

#undef WASI_NN_IMPORT

#ifdef __cplusplus
}
#endif

#endif /* WASI_NN_H */
