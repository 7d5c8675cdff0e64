#!/usr/bin/env python3
"""Run the exported models in tract (PyPI `tract` 0.23.9, the same tract as the Rust crate) and
compare top-1 with onnxruntime on val, image by image, using the same input tensors.

  python tract_check.py --data ../../data/fer --models ../emotion-mnv2-fp32.onnx ../emotion-mnv2-int8.onnx
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import onnx
import onnxruntime as ort
import tract

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ferdata  # noqa: E402
from export import preprocess, report  # noqa: E402


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
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        lo = np.stack([s.run(None, {s.get_inputs()[0].name: x[i:i + 1]})[0][0] for i in range(len(x))])
        m = tract.onnx().load(path).into_model().into_runnable()
        t = time.time()
        lt = np.stack([m.run([x[i:i + 1]])[0].to_numpy()[0] for i in range(len(x))])
        ms = (time.time() - t) / len(x) * 1000
        r = {"n": len(x), "top1_agreement_tract_vs_ort": float((lo.argmax(1) == lt.argmax(1)).mean()),
             "top1_agreement_7class": float((lo[:, :7].argmax(1) == lt[:, :7].argmax(1)).mean()),
             "max_abs_logit_diff": float(np.abs(lo - lt).max()),
             "tract_ms_per_image_1thread": ms, "tract": report(lt, va)}
        out[os.path.basename(path)] = r
        print(os.path.basename(path), {k: v for k, v in r.items() if k != "tract"},
              "FER2013 acc", round(r["tract"]["fer2013_val"]["accuracy"], 4),
              "FER+ acc", round(r["tract"]["ferplus_val"]["accuracy"], 4), flush=True)
    if a.report:
        with open(a.report, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
