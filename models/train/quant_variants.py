#!/usr/bin/env python3
"""Alternative int8 forms of the emotion classifier, for finding the one tract runs fastest.

From the fp32 model (the same one models/train/export.py quantizes to QDQ) this writes:

  qop-conv.onnx  QOperator: every Conv becomes QLinearConv (int8 kernels in tract), Add, pool and
                 Gemm stay float (tract cannot load QLinearAdd / QLinearGlobalAveragePool / QGemm);
  qop-pw.onnx    QOperator for the 1x1 (pointwise) Convs only; depthwise and the stem stay float
                 (tract runs int8 depthwise as a generic m=1, k=9 matmul);
  qdq-pw.onnx    QDQ for the pointwise Convs only (for reference: tract runs QDQ in float);
  qop-pw-pt.onnx as qop-pw with per-tensor instead of per-channel weight scales;
  qop-pw-pt-s8.onnx as qop-pw-pt with int8 instead of uint8 activations;
  qop-conv-pt.onnx as qop-conv, per-tensor.

and checks each with onnxruntime on FER2013 val: accuracy and top-1 agreement with fp32. Time
them with tract through `emonet bench --raw-model PATH` (see compare_runtimes.py).

    python3 models/train/quant_variants.py --fp32 models/emotion-mnv2-fp32.onnx \
        --data data/fer --out /tmp/emonet-variants
"""
import argparse
import json
import os

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

import ferdata
import onnx_io
from onnx_io import Calib, preprocess


def run(path, x):
    """The (first) output's logits."""
    return next(iter(onnx_io.run(path, x)[0].values()))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fp32", default="models/emotion-mnv2-fp32.onnx")
    ap.add_argument("--int8", default="models/emotion-mnv2-int8.onnx",
                    help="the shipped QDQ model, scored alongside for comparison")
    ap.add_argument("--data", default="data/fer")
    ap.add_argument("--out", default="/tmp/emonet-variants")
    ap.add_argument("--calib-n", type=int, default=300)
    ap.add_argument("--val-n", type=int, default=2000)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    m = onnx.load(a.fp32)
    meta = {p.key: p.value for p in m.metadata_props}
    size = int(meta["emonet.input_height"])
    inits = {i.name: i for i in m.graph.initializer}
    convs = [n for n in m.graph.node if n.op_type == "Conv"]

    def kshape(n):
        return list(inits[n.input[1]].dims) if n.input[1] in inits else None

    def group(n):
        return next((at.i for at in n.attribute if at.name == "group"), 1)

    not_pw = [n.name for n in convs if group(n) > 1 or (kshape(n) or [0, 0, 0])[2:] != [1, 1]]
    print(f"{len(convs)} Conv, {len(convs) - len(not_pw)} pointwise", flush=True)

    tr = ferdata.load_split(os.path.join(a.data, "train"))
    rng = np.random.default_rng(0)
    pick = np.sort(rng.choice(len(tr["files"]), size=min(a.calib_n, len(tr["files"])), replace=False))
    calib = preprocess(tr["images"][pick], size)
    pre = os.path.join(a.out, "pre.onnx")
    quant_pre_process(a.fp32, pre, skip_symbolic_shape=True)

    variants = {
        "qop-conv": dict(quant_format=QuantFormat.QOperator, op_types_to_quantize=["Conv"]),
        "qop-pw": dict(quant_format=QuantFormat.QOperator, op_types_to_quantize=["Conv"],
                       nodes_to_exclude=not_pw),
        "qdq-pw": dict(quant_format=QuantFormat.QDQ, op_types_to_quantize=["Conv"],
                       nodes_to_exclude=not_pw),
        # per-tensor weight scales (tract's quantized matmul may prefer them)
        "qop-pw-pt": dict(quant_format=QuantFormat.QOperator, op_types_to_quantize=["Conv"],
                          nodes_to_exclude=not_pw, per_channel=False),
        # int8 activations: tract converts u8 activations to i8 before every int8 matmul
        "qop-pw-pt-s8": dict(quant_format=QuantFormat.QOperator, op_types_to_quantize=["Conv"],
                             nodes_to_exclude=not_pw, per_channel=False,
                             activation_type=QuantType.QInt8),
        "qop-conv-pt": dict(quant_format=QuantFormat.QOperator, op_types_to_quantize=["Conv"],
                            per_channel=False),
    }
    va = ferdata.load_split(os.path.join(a.data, "val"), limit=a.val_n)
    x = preprocess(va["images"], size)
    truth = va["fer2013"]
    ok = truth >= 0
    l32 = run(a.fp32, x)
    res = {"fp32": {"acc": float((l32.argmax(1) == truth)[ok].mean())}}
    if os.path.isfile(a.int8):
        l8 = run(a.int8, x)
        res["qdq-shipped"] = {"path": a.int8, "bytes": os.path.getsize(a.int8),
                              "acc": float((l8.argmax(1) == truth)[ok].mean()),
                              "top1_agreement_with_fp32": float((l8.argmax(1) == l32.argmax(1)).mean()),
                              "max_abs_logit_diff": float(np.abs(l8 - l32).max())}
        print("qdq-shipped", json.dumps(res["qdq-shipped"]), flush=True)
    for name, kw in variants.items():
        path = os.path.join(a.out, f"emotion-mnv2-{name}.onnx")
        kw = {"per_channel": True, "activation_type": QuantType.QUInt8, **kw}
        quantize_static(pre, path, Calib(calib), weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax, **kw)
        q = onnx.load(path)
        del q.metadata_props[:]
        for k, v in meta.items():
            q.metadata_props.add(key=k, value=v.replace("fp32", name) if k == "emonet.name" else v)
        onnx.save(q, path)
        lq = run(path, x)
        ops = sorted({n.op_type for n in q.graph.node})
        res[name] = {
            "path": path, "bytes": os.path.getsize(path), "ops": ops,
            "acc": float((lq.argmax(1) == truth)[ok].mean()),
            "top1_agreement_with_fp32": float((lq.argmax(1) == l32.argmax(1)).mean()),
            "max_abs_logit_diff": float(np.abs(lq - l32).max()),
        }
        print(name, json.dumps(res[name]), flush=True)
    print(f"fp32 acc {res['fp32']['acc']:.4f} on {int(ok.sum())} FER2013 val images")
    with open(os.path.join(a.out, "variants.json"), "w") as f:
        json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
