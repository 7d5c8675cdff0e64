#!/usr/bin/env python3
"""Quick val probes of train.py checkpoints in PyTorch: each checkpoint at its own input size (or
at --sizes), with horizontal-flip averaging (--flip), the mean-softmax ensemble of all of them
(--ensemble) and their weight average (--average, evaluated at the first one's size). Prints
FER2013 / FER+ majority accuracy and score (their mean) per line, the numbers train.py logs.

  python models/train/val_probe.py --data data/fer/val CKPT [CKPT ...] [--sizes 64,72,80]
      [--flip] [--ensemble] [--average]

For questions ("would X help?"), not for the shipped numbers: those come from `emonet eval`.
"""
import argparse
import os

import torch

import ferdata
import train


def load(path):
    ck = torch.load(path, map_location="cpu", weights_only=False)
    return ck["state_dict"], ck["config"]["input_size"]


def probs(state_dict, size, images, flip=False):
    m = train.build_model(8)
    m.load_state_dict(state_dict)
    if flip:
        images = images[:, :, ::-1].copy()
    logits = train.predict(m, images, size, torch.device("cpu"))
    return torch.from_numpy(logits).softmax(1).numpy()


def report(tag, p, va):
    a = ferdata.accuracies(p, va)
    score = (a["fer2013_acc"] + a["ferplus_acc"]) / 2
    print(f"{tag}: FER2013 {a['fer2013_acc']:.4f}  FER+ {a['ferplus_acc']:.4f}  score {score:.4f}", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="a split dir with labels.csv (e.g. data/fer/val)")
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("--sizes", help="comma-separated input sizes (default: each checkpoint's own)")
    ap.add_argument("--flip", action="store_true", help="also average each with its mirror image")
    ap.add_argument("--ensemble", action="store_true", help="also the mean softmax of all checkpoints")
    ap.add_argument("--average", action="store_true", help="also the checkpoints' weight average")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    va = ferdata.load_split(a.data)

    loaded = [(p, *load(p)) for p in a.checkpoints]
    own = []
    for path, sd, size in loaded:
        for s in [int(x) for x in a.sizes.split(",")] if a.sizes else [size]:
            p = probs(sd, s, va["images"])
            report(f"{path} @{s}", p, va)
            if a.flip:
                report(f"{path} @{s} + flip", p + probs(sd, s, va["images"], flip=True), va)
        own.append(p if not a.sizes else probs(sd, size, va["images"]))
    if a.ensemble:
        report("ensemble (mean softmax, each at its own size)", sum(own) / len(own), va)
    if a.average:
        sds = [sd for _, sd, _ in loaded]
        avg = {k: sum(sd[k] for sd in sds) / len(sds) if v.is_floating_point() else v
               for k, v in sds[0].items()}
        report(f"weight average @{loaded[0][2]}", probs(avg, loaded[0][2], va["images"]), va)


if __name__ == "__main__":
    main()
