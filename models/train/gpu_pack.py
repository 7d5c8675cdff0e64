#!/usr/bin/env python3
"""Pack the FER data and the ImageNet weights into shards small enough to travel to a GPU machine,
and unpack them there.

A GPU call carries the working tree plus at most 64 MiB; the data (52 MB as lossless PNG) and the
weights (14 MB) do not fit beside the tree in one call, so they go in two shards, each carried by
one call to the same warm machine (`gpu_run.sh` says how). Lossless: the images come back
bit-exact, in labels.csv row order, as `images.npy` beside `labels.csv` (ferdata.load_split reads
it instead of the PNG files).

  python gpu_pack.py pack --data data/fer --weights W.pth --out .gpu [--split-at 12000]
  python gpu_pack.py unpack --shards .gpu/a .gpu/b --data /tmp/fer --weights /tmp/w.pth
"""
import argparse
import hashlib
import json
import os
import shutil

import numpy as np
from PIL import Image

import ferdata

COLS = 128  # images per mosaic row


def mosaic(images):
    rows = (len(images) + COLS - 1) // COLS
    m = np.zeros((rows * 48, COLS * 48), np.uint8)
    for i, a in enumerate(images):
        r, c = divmod(i, COLS)
        m[r * 48:(r + 1) * 48, c * 48:(c + 1) * 48] = a
    return m


def unmosaic(path, n):
    m = np.asarray(Image.open(path).convert("L"))
    out = np.empty((n, 48, 48), np.uint8)
    for i in range(n):
        r, c = divmod(i, COLS)
        out[i] = m[r * 48:(r + 1) * 48, c * 48:(c + 1) * 48]
    return out


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


def pack(a):
    da, db = os.path.join(a.out, "a"), os.path.join(a.out, "b")
    for d in (da, db):
        os.makedirs(d, exist_ok=True)
    meta = {"parts": {}}
    for split in ("train", "val"):
        sd = os.path.join(a.data, split)
        imgs = ferdata.load_split(sd)["images"]
        shutil.copy(os.path.join(sd, "labels.csv"), os.path.join(da, f"{split}.csv"))
        cuts = [(split, 0, len(imgs), da)] if split == "val" else \
            [("train1", 0, a.split_at, da), ("train2", a.split_at, len(imgs), db)]
        for name, lo, hi, d in cuts:
            p = os.path.join(d, f"{name}.png")
            Image.fromarray(mosaic(imgs[lo:hi])).save(p, compress_level=9)
            meta["parts"][name] = {"shard": os.path.basename(d), "n": hi - lo,
                                   "sha256_pixels": hashlib.sha256(imgs[lo:hi].tobytes()).hexdigest()}
    shutil.copy(a.weights, os.path.join(da, "weights.pth"))
    meta["weights_sha256"] = sha256(a.weights)
    with open(os.path.join(da, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)
    for d in (da, db):
        print(d, sum(os.path.getsize(os.path.join(d, x)) for x in os.listdir(d)), "bytes")


def unpack(a):
    find = {}
    for d in a.shards:
        for x in os.listdir(d):
            find[x] = os.path.join(d, x)
    meta = json.load(open(find["meta.json"]))
    parts = {}
    for name, info in meta["parts"].items():
        imgs = unmosaic(find[f"{name}.png"], info["n"])
        got = hashlib.sha256(imgs.tobytes()).hexdigest()
        if got != info["sha256_pixels"]:
            raise SystemExit(f"{find[name + '.png']}: pixels do not match the packed sha256")
        parts[name] = imgs
    for split, imgs in (("train", np.concatenate([parts["train1"], parts["train2"]])),
                        ("val", parts["val"])):
        sd = os.path.join(a.data, split)
        os.makedirs(sd, exist_ok=True)
        shutil.copy(find[f"{split}.csv"], os.path.join(sd, "labels.csv"))
        np.save(os.path.join(sd, "images.npy"), imgs)
        print(f"{sd}: {len(imgs)} images")
    if sha256(find["weights.pth"]) != meta["weights_sha256"]:
        raise SystemExit(f"{find['weights.pth']}: sha256 does not match")
    os.makedirs(os.path.dirname(os.path.abspath(a.weights)), exist_ok=True)
    shutil.copy(find["weights.pth"], a.weights)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack")
    p.add_argument("--data", required=True)
    p.add_argument("--weights", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--split-at", type=int, default=12000, help="train rows in shard a")
    u = sub.add_parser("unpack")
    u.add_argument("--shards", nargs="+", required=True)
    u.add_argument("--data", required=True)
    u.add_argument("--weights", required=True)
    a = ap.parse_args()
    pack(a) if a.cmd == "pack" else unpack(a)


if __name__ == "__main__":
    main()
