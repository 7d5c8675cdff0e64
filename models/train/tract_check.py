#!/usr/bin/env python3
"""Run the exported models in tract (PyPI `tract` 0.23.9, the same tract as the Rust crate) and
compare top-1 with onnxruntime on val, image by image, using the same input tensors, for every
output of the file (two-head files: `ferplus` and `fer2013`).

  python tract_check.py --data ../../data/fer --models ../emotion-mnv2-fp32.onnx ../emotion-mnv2-int8.onnx
"""
import argparse
import json
import os
import time

import numpy as np
import onnx
import tract

import ferdata
from export import agreement, summary
from onnx_io import preprocess, report
from onnx_io import run as run_ort


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--models", nargs="+", required=True)
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--report")
    a = ap.parse_args()
    va = ferdata.load_split(os.path.join(a.data, "val"))
    if a.limit:
        va = {k: v[:a.limit] for k, v in va.items()}
    out = {"tract_version": tract.version()}
    for path in a.models:
        meta = {p.key: p.value for p in onnx.load(path, load_external_data=False).metadata_props}
        size = int(meta["emonet.input_height"])
        x = preprocess(va["images"], size)
        lo, _ = run_ort(path, x, 1)
        names = list(lo)
        m = tract.onnx().load(path).into_model().into_runnable()
        t = time.time()
        ys = [m.run([x[i:i + 1]]) for i in range(len(x))]
        ms = (time.time() - t) / len(x) * 1000
        lt = {k: np.stack([y[j].to_numpy()[0] for y in ys]) for j, k in enumerate(names)}
        r = {"n": len(x), "outputs": names,
             "top1_agreement_tract_vs_ort": agreement(lo, lt),
             "max_abs_logit_diff": max(float(np.abs(lo[k] - lt[k]).max()) for k in names),
             "tract_ms_per_image_1thread": ms, "tract": report(lt, va)}
        out[os.path.basename(path)] = r
        print(os.path.basename(path), {k: v for k, v in r.items() if k != "tract"}, flush=True)
        print("  tract:", summary(r["tract"]), flush=True)
    if a.report:
        with open(a.report, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
