#!/usr/bin/env python3
"""Export a train.py checkpoint to ONNX (fp32), quantize it to static int8 QDQ calibrated on
training images and to int8 weights with float activations (W8A32, weight_only.py), and check
all of them with onnxruntime on val.

A two-head (v2) checkpoint gives one ONNX output per head, named after it (`ferplus`, `fer2013`),
with `emonet.outputs` listing them and `emonet.labels.<output>` naming each one's labels;
`emonet.labels` holds the first (default) output's labels, so a reader of single-output files
still works. A v1 checkpoint gives the single output `logits` as before.

Example:
  python export.py --checkpoint runs/v2-64-e14/best-ferplus.pt --data ../../data/fer \
      --fp32 ../emotion-mnv2-fp32.onnx --int8 ../emotion-mnv2-int8.onnx \
      --w8 ../emotion-mnv2-w8.onnx --report metrics-ort.json

Writes the emonet.* metadata props (see models/README.md) into every file.
"""
import argparse
import json
import os
import tempfile

import numpy as np
import onnx
import torch
from onnxruntime.quantization import (CalibrationMethod, QuantFormat,
                                      QuantType, quantize_static)
from onnxruntime.quantization.shape_inference import quant_pre_process

import ferdata
from onnx_io import Calib, preprocess, report
from onnx_io import run as run_ort
from train import model_from_config
from weight_only import quantize_weights


def prune_opsets(model):
    """Keep only the opset imports whose domain some node uses (quant_pre_process adds many)."""
    used = {n.domain for n in model.graph.node} | {""}
    keep = [o for o in model.opset_import if o.domain in used]
    del model.opset_import[:]
    model.opset_import.extend(keep)


def set_metadata(model, cfg, name, face_margin):
    heads = cfg.get("heads")
    meta = {
        "emonet.labels": ",".join(next(iter(heads.values())) if heads else cfg["labels"]),
        "emonet.input_height": str(cfg["input_size"]),
        "emonet.input_width": str(cfg["input_size"]),
        "emonet.channels": str(cfg["channels"]),
        "emonet.color": cfg["color"],
        "emonet.mean": ",".join(f"{v:g}" for v in cfg["mean"]),
        "emonet.std": ",".join(f"{v:g}" for v in cfg["std"]),
        "emonet.output": "logits",
        "emonet.face_margin": f"{face_margin:g}",
        "emonet.name": name,
    }
    if heads:
        meta["emonet.outputs"] = ",".join(heads)
        for k, v in heads.items():
            meta[f"emonet.labels.{k}"] = ",".join(v)
    del model.metadata_props[:]
    for k, v in meta.items():
        p = model.metadata_props.add()
        p.key, p.value = k, v
    model.producer_name = "emonet models/train/export.py"
    return meta


def summary(rep):
    return " | ".join(f"{k} acc {r['accuracy']:.4f} macro-F1 {r['macro_f1']:.4f}" for k, r in rep.items())


def agreement(a, b):
    """Top-1 agreement per output between two {name: logits} dicts."""
    return {k: float((a[k].argmax(1) == b[k].argmax(1)).mean()) for k in a}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--data", required=True, help="dir with train/ (calibration) and val/ (check)")
    ap.add_argument("--fp32", required=True)
    ap.add_argument("--int8", required=True)
    ap.add_argument("--w8", help="also write the int8-weights / float-activations (W8A32) file here")
    ap.add_argument("--report", help="write the onnxruntime metrics as JSON here")
    ap.add_argument("--name", default="emonet-mnv2-fer")
    ap.add_argument("--face-margin", type=float, default=0.1)
    ap.add_argument("--opset", type=int, default=13)
    ap.add_argument("--calib-n", type=int, default=1000, help="training images used for calibration")
    ap.add_argument("--calib-method", default="MinMax", choices=["MinMax", "Percentile", "Entropy"])
    ap.add_argument("--fp32-head", action="store_true",
                    help="leave the classifier Gemm unquantized (float logits from the dequantized features)")
    ap.add_argument("--threads", type=int, default=1, help="onnxruntime threads for the val check")
    ap.add_argument("--val-limit", type=int, default=0, help="check on the first N val rows only (smoke runs)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()

    ck = torch.load(a.checkpoint, map_location="cpu", weights_only=False)
    cfg = ck["config"]
    size = cfg["input_size"]
    model = model_from_config(cfg)
    model.load_state_dict(ck["state_dict"])
    model.eval()
    out_names = list(cfg["heads"]) if "heads" in cfg else ["logits"]
    print(f"checkpoint {a.checkpoint}: epoch {ck['epoch']}, val {ck['val']}", flush=True)

    # fp32 export (BatchNorm folded into Conv by the exporter in eval mode).
    dummy = torch.zeros(1, 3, size, size)
    with tempfile.TemporaryDirectory() as td:
        raw = os.path.join(td, "raw.onnx")
        torch.onnx.export(model, dummy, raw, input_names=["input"], output_names=out_names,
                          opset_version=a.opset, do_constant_folding=True, dynamo=False)
        m = onnx.load(raw)
        onnx.checker.check_model(m)
        meta = set_metadata(m, cfg, a.name + "-fp32", a.face_margin)
        os.makedirs(os.path.dirname(os.path.abspath(a.fp32)), exist_ok=True)
        onnx.save(m, a.fp32)
        print(f"wrote {a.fp32} ({os.path.getsize(a.fp32)} bytes)", flush=True)

        # Static int8 QDQ, calibrated on training images (eval transform, seeded sample).
        tr = ferdata.load_split(os.path.join(a.data, "train"))
        rng = np.random.default_rng(a.seed)
        pick = np.sort(rng.choice(len(tr["files"]), size=min(a.calib_n, len(tr["files"])), replace=False))
        calib = preprocess(tr["images"][pick], size)
        pre = os.path.join(td, "pre.onnx")
        quant_pre_process(a.fp32, pre, skip_symbolic_shape=True)
        q8 = os.path.join(td, "q8.onnx")
        exclude = [n.name for n in onnx.load(pre).graph.node if n.op_type == "Gemm"] if a.fp32_head else []
        quantize_static(pre, q8, Calib(calib, "input"), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8,
                        calibrate_method=getattr(CalibrationMethod, a.calib_method),
                        nodes_to_exclude=exclude)
        mq = onnx.load(q8)
        prune_opsets(mq)
        set_metadata(mq, cfg, a.name + "-int8", a.face_margin)
        onnx.checker.check_model(mq)
        onnx.save(mq, a.int8)
        print(f"wrote {a.int8} ({os.path.getsize(a.int8)} bytes), calibrated on {len(pick)} "
              f"training images ({a.calib_method})", flush=True)

    if a.w8:
        mw = onnx.load(a.fp32)
        nq = quantize_weights(mw)
        set_metadata(mw, cfg, a.name + "-w8", a.face_margin)
        onnx.checker.check_model(mw)
        onnx.save(mw, a.w8)
        print(f"wrote {a.w8} ({os.path.getsize(a.w8)} bytes), {nq} weight tensors int8, "
              "activations float", flush=True)

    # Check on val with onnxruntime.
    va = ferdata.load_split(os.path.join(a.data, "val"), limit=a.val_limit or None)
    x = preprocess(va["images"], size)
    with torch.no_grad():
        y = model(torch.from_numpy(x))
        lt = dict(zip(out_names, (t.numpy() for t in (y if isinstance(y, tuple) else (y,)))))
    l32, ms32 = run_ort(a.fp32, x, a.threads)
    l8, ms8 = run_ort(a.int8, x, a.threads)
    forms = {"fp32": (a.fp32, l32, ms32), "int8": (a.int8, l8, ms8)}
    if a.w8:
        forms["w8"] = (a.w8,) + run_ort(a.w8, x, a.threads)
    res = {
        "checkpoint": os.path.abspath(a.checkpoint), "epoch": ck["epoch"], "metadata": meta,
        "calibration": {"n": int(len(calib)), "method": a.calib_method, "split": "train", "seed": a.seed,
                        "fp32_head": a.fp32_head},
        "bytes": {k: os.path.getsize(v[0]) for k, v in forms.items()},
        "ort_ms_per_image_1thread": {k: v[2] for k, v in forms.items()},
        "max_abs_diff_torch_vs_ort_fp32": max(float(np.abs(lt[k] - l32[k]).max()) for k in lt),
        "top1_agreement": {
            "torch_vs_ort_fp32": agreement(lt, l32),
            **{f"ort_fp32_vs_{k}": agreement(l32, v[1]) for k, v in forms.items() if k != "fp32"},
        },
        **{k: report(v[1], va) for k, v in forms.items()},
    }
    for k in forms:
        print(f"onnxruntime {k}: {summary(res[k])}")
    print(f"top-1 agreement {res['top1_agreement']}, ms/img {res['ort_ms_per_image_1thread']}")
    if a.report:
        with open(a.report, "w") as f:
            json.dump(res, f, indent=1)
        np.savez_compressed(os.path.splitext(a.report)[0] + "-logits.npz", files=np.array(va["files"]),
                            **{f"{k}/{o}": v[1][o] for k, v in forms.items() for o in v[1]})


if __name__ == "__main__":
    main()
