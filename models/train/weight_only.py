#!/usr/bin/env python3
"""Quantize an fp32 ONNX classifier's weights to int8 (W8A32): every Conv and Gemm weight becomes
a per-output-channel, symmetric int8 initializer followed by a DequantizeLinear; activations
stay float.

Why this form exists: tract 0.23.9 never runs int8 kernels for a QDQ model — it keeps the float
convolutions and adds a quantize and a dequantize pass over every activation, so static QDQ is
*slower* than fp32 in tract (see docs/performance.md, "int8: what was measured and what ships"). With
weights-only DequantizeLinear on constants, tract folds the dequantization at load time and runs
the fp32 kernels: the file keeps int8's size and loses none of fp32's speed, and since only
constant weights are rounded the result is bit-stable across x86 and aarch64.

Example:
  python weight_only.py ../emotion-mnv2-fp32.onnx ../emotion-mnv2-w8.onnx --name emonet-mnv2-fer-w8
"""
import argparse

import numpy as np
import onnx
from onnx import helper, numpy_helper


def quantize_weights(model):
    """Rewrite `model` in place; returns how many weight tensors were quantized."""
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    consumers = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    done, new_nodes = 0, []
    for n in g.node:
        if n.op_type in ("Conv", "Gemm") and len(n.input) > 1 and n.input[1] in inits:
            wname = n.input[1]
            if len(consumers[wname]) != 1:
                raise SystemExit(f"weight {wname} is shared by {len(consumers[wname])} nodes")
            w = numpy_helper.to_array(inits[wname]).astype(np.float32)
            if n.op_type == "Gemm" and any(a.name == "transB" and a.i == 0 for a in n.attribute):
                raise SystemExit(f"Gemm {n.name}: transB=0 would need axis 1; not handled")
            amax = np.abs(w.reshape(w.shape[0], -1)).max(axis=1)
            scale = np.where(amax > 0, amax / 127.0, 1.0).astype(np.float32)
            q = np.clip(np.round(w / scale.reshape((-1,) + (1,) * (w.ndim - 1))), -127, 127).astype(np.int8)
            g.initializer.remove(inits[wname])
            g.initializer.extend([
                numpy_helper.from_array(q, wname + "_q8"),
                numpy_helper.from_array(scale, wname + "_scale"),
                numpy_helper.from_array(np.zeros(len(scale), np.int8), wname + "_zero"),
            ])
            new_nodes.append(helper.make_node(
                "DequantizeLinear", [wname + "_q8", wname + "_scale", wname + "_zero"], [wname],
                name=wname + "_dequant", axis=0))
            done += 1
        new_nodes.append(n)
    del g.node[:]
    g.node.extend(new_nodes)
    return done


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("fp32")
    ap.add_argument("out")
    ap.add_argument("--name", help="new emonet.name metadata value (default: keep, -fp32 -> -w8)")
    a = ap.parse_args()
    m = onnx.load(a.fp32)
    n = quantize_weights(m)
    for p in m.metadata_props:
        if p.key == "emonet.name":
            p.value = a.name or p.value.replace("-fp32", "") + "-w8"
    onnx.checker.check_model(m)
    onnx.save(m, a.out)
    print(f"wrote {a.out}: {n} weight tensors int8 (per output channel, symmetric), activations float")


if __name__ == "__main__":
    main()
