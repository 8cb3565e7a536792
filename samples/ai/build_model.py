#!/usr/bin/python3
"""Build a small, deterministic ONNX classifier ("hadamard-net") without downloads.

Requires only Debian's python3-onnx (apt-get install -y python3-onnx); run with
/usr/bin/python3 (the Debian interpreter that sees the apt package).

    /usr/bin/python3 build_model.py [OUT.onnx]      # default: model.onnx

Graph (opset 13, IR version 8), input "input" f32 [1,1024], output "probs" f32 [1,10]:

    x:[1,1024] -> Reshape [1,1,32,32]
      -> Conv 1->C 3x3 pad1 -> Relu
      -> (Conv C->C 3x3 pad1 -> Relu) x L
      -> Conv C->1 1x1 -> Mul 0.05                   (the "branch")
      -> Add x (residual) -> Reshape [1,1024]
      -> MatMul W[1024,10] -> Softmax(axis=1)

The conv weights are pseudo-random, drawn from a self-contained xorshift32
generator with a fixed seed (so no numpy/random version can change them).
W's column k is 8/1024 * H[ROWS[k]], H being the 1024x1024 Sylvester-Hadamard
matrix, H[r][i] = (-1)^popcount(r & i). Those rows are mutually orthogonal,
so feeding row ROWS[k] (entries +-1) as the input gives logit ~8 for class k
and ~0 for the others, perturbed only slightly by the residual conv branch:
argmax == k, p(k) > 0.99. A guest can generate the input itself with
__builtin_popcount, no data file needed.

The same bytes are produced on every run (no timestamps, fixed producer
fields, raw little-endian tensor data).
"""
import struct
import sys

import onnx
from onnx import TensorProto, helper

SEED = 0x0C0FFEE1
CHANNELS = 48          # C
HIDDEN_LAYERS = 4      # L
SIDE = 32
N = SIDE * SIDE        # 1024 inputs
CLASSES = 10
# Hadamard rows used as class templates (row 0 is the all-ones vector, avoided).
ROWS = [1, 3, 5, 6, 9, 10, 12, 15, 17, 18]
LOGIT_SCALE = 8.0
BRANCH_SCALE = 0.05


class XorShift32:
    def __init__(self, seed):
        self.s = seed & 0xFFFFFFFF or 1

    def next_u32(self):
        s = self.s
        s ^= (s << 13) & 0xFFFFFFFF
        s ^= s >> 17
        s ^= (s << 5) & 0xFFFFFFFF
        self.s = s
        return s

    def uniform(self, lo, hi):
        # 24-bit mantissa -> exactly representable as f32
        return lo + (hi - lo) * ((self.next_u32() >> 8) / float(1 << 24))


def f32_tensor(name, dims, values):
    raw = struct.pack("<%df" % len(values), *values)
    return helper.make_tensor(name, TensorProto.FLOAT, dims, raw, raw=True)


def i64_tensor(name, values):
    raw = struct.pack("<%dq" % len(values), *values)
    return helper.make_tensor(name, TensorProto.INT64, [len(values)], raw, raw=True)


def conv_weights(rng, cout, cin, k):
    fan_in = cin * k * k
    bound = (6.0 / fan_in) ** 0.5          # He-uniform, keeps ReLU activations O(1)
    w = [rng.uniform(-bound, bound) for _ in range(cout * cin * k * k)]
    b = [rng.uniform(-0.01, 0.01) for _ in range(cout)]
    return w, b


def hadamard(r, i):
    return -1.0 if bin(r & i).count("1") & 1 else 1.0


def build():
    rng = XorShift32(SEED)
    inits = [
        i64_tensor("shape_img", [1, 1, SIDE, SIDE]),
        i64_tensor("shape_vec", [1, N]),
        f32_tensor("branch_scale", [], [BRANCH_SCALE]),
    ]
    nodes = [helper.make_node("Reshape", ["input", "shape_img"], ["img"], name="to_img")]

    prev, cin = "img", 1
    layers = [(CHANNELS, 3)] * (1 + HIDDEN_LAYERS) + [(1, 1)]
    for idx, (cout, k) in enumerate(layers):
        w, b = conv_weights(rng, cout, cin, k)
        wn, bn, out = "conv%d_w" % idx, "conv%d_b" % idx, "conv%d" % idx
        inits += [f32_tensor(wn, [cout, cin, k, k], w), f32_tensor(bn, [cout], b)]
        nodes.append(helper.make_node(
            "Conv", [prev, wn, bn], [out], name=out,
            kernel_shape=[k, k], pads=[k // 2] * 4, strides=[1, 1]))
        last = idx == len(layers) - 1
        if not last:
            nodes.append(helper.make_node("Relu", [out], [out + "_relu"], name=out + "_relu"))
            out = out + "_relu"
        prev, cin = out, cout

    nodes += [
        helper.make_node("Mul", [prev, "branch_scale"], ["branch"], name="scale_branch"),
        helper.make_node("Add", ["img", "branch"], ["res"], name="residual"),
        helper.make_node("Reshape", ["res", "shape_vec"], ["flat"], name="to_vec"),
        helper.make_node("MatMul", ["flat", "templates"], ["logits"], name="templates_mm"),
        helper.make_node("Softmax", ["logits"], ["probs"], name="softmax", axis=1),
    ]
    tmpl = [LOGIT_SCALE / N * hadamard(ROWS[k], i) for i in range(N) for k in range(CLASSES)]
    inits.append(f32_tensor("templates", [N, CLASSES], tmpl))

    graph = helper.make_graph(
        nodes, "hadamard_net",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, N])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, [1, CLASSES])],
        initializer=inits)
    model = helper.make_model(
        graph, producer_name="outpost-nn-prep", producer_version="1",
        opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    model.model_version = 1
    model.doc_string = "hadamard-net: input = Hadamard row ROWS[k] (+-1) => argmax k; ROWS=%s" % ROWS
    onnx.checker.check_model(model)
    return model


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else "model.onnx"
    data = build().SerializeToString()
    with open(out, "wb") as f:
        f.write(data)
    print("wrote %s (%d bytes)" % (out, len(data)))
