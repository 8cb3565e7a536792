#!/usr/bin/python3
"""Tiny per-element-type models for I/O tests: typemodels/{add,ident}_<type>.onnx.
add_<t>:   X:<t>[batch,3] -> Y = X + X   (symbolic first dim "batch")
ident_<t>: X:<t>[2,3]     -> Y = Identity(X)
"""
import os, sys
import onnx
from onnx import TensorProto, helper

TYPES = {"f32": TensorProto.FLOAT, "f16": TensorProto.FLOAT16, "f64": TensorProto.DOUBLE,
         "u8": TensorProto.UINT8, "i32": TensorProto.INT32, "i64": TensorProto.INT64,
         "bf16": TensorProto.BFLOAT16}
out = sys.argv[1] if len(sys.argv) > 1 else "typemodels"
os.makedirs(out, exist_ok=True)
for name, t in TYPES.items():
    for op, shape in (("Add", ["batch", 3]), ("Identity", [2, 3])):
        inputs = ["X", "X"] if op == "Add" else ["X"]
        g = helper.make_graph([helper.make_node(op, inputs, ["Y"])], "%s_%s" % (op, name),
                              [helper.make_tensor_value_info("X", t, shape)],
                              [helper.make_tensor_value_info("Y", t, shape)])
        m = helper.make_model(g, producer_name="outpost-nn-prep",
                              opset_imports=[helper.make_opsetid("", 14)])
        m.ir_version = 8
        onnx.checker.check_model(m)
        path = os.path.join(out, "%s_%s.onnx" % ("add" if op == "Add" else "ident", name))
        with open(path, "wb") as f:
            f.write(m.SerializeToString())
print("wrote", sorted(os.listdir(out)))
