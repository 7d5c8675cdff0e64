#!/usr/bin/env python3
"""Per-class offsets added to a two-head file's `ferplus` logits, fitted on the training split
to maximise ferplus-clean accuracy (coordinate search, 4 sweeps of −1.5..1.5 per class), then
scored on val. The head learns vote distributions and is scored on the majority; this measures
how much a fixed shift of its decision boundaries buys (model card: not adopted).

  python logit_offsets.py --data ../../data/fer --model ../emotion-mnv2-fp32.onnx
"""
import argparse
import os

import numpy as np
import onnx

import ferdata
from onnx_io import preprocess, run


def accuracy(logits, truth, offsets):
    m = truth >= 0
    return float(((logits[m] + offsets).argmax(1) == truth[m]).mean())


def fit(logits, truth, sweeps=4):
    b = np.zeros(logits.shape[1])
    for _ in range(sweeps):
        for c in range(len(b)):
            best = (accuracy(logits, truth, b), b[c])
            for v in np.linspace(-1.5, 1.5, 61):
                trial = b.copy()
                trial[c] = v
                a = accuracy(logits, truth, trial)
                if a > best[0] + 1e-9:
                    best = (a, v)
            b[c] = best[1]
    return b


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--model", required=True)
    a = ap.parse_args()
    meta = {p.key: p.value for p in onnx.load(a.model, load_external_data=False).metadata_props}
    size = int(meta["emonet.input_height"])
    out = {}
    for split in ("train", "val"):
        d = ferdata.load_split(os.path.join(a.data, split))
        logits, _ = run(a.model, preprocess(d["images"], size), 1)
        out[split] = (logits["ferplus"], d["ferplus_clean"])
    b = fit(*out["train"])
    print("offsets", " ".join(f"{k}={v:+.2f}" for k, v in zip(ferdata.LABELS, b)))
    for split, (z, y) in out.items():
        print(f"{split}: ferplus-clean {accuracy(z, y, 0 * b):.4f} -> {accuracy(z, y, b):.4f}")


if __name__ == "__main__":
    main()
