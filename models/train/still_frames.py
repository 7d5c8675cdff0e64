#!/usr/bin/env python3
"""Frames of a still face for `emonet bench`: one sample frame with independent Gaussian camera
noise per frame, so the reuse of classifications (`[classifier.reuse]`) and of detections
(`[detector.reuse]`) can be measured.

    python3 models/train/still_frames.py --out /tmp/still
    target/release/emonet bench --frames /tmp/still --frames-count 300 --reuse-max-frames 2
"""
import argparse
import os

import numpy as np
from PIL import Image


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frame", default="samples/frames/0000.jpg")
    ap.add_argument("--out", required=True)
    ap.add_argument("--count", type=int, default=30)
    ap.add_argument("--sigma", type=float, default=2.0, help="noise, grey levels")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    im = np.asarray(Image.open(a.frame).convert("RGB")).astype(np.float32)
    rng = np.random.default_rng(a.seed)
    os.makedirs(a.out, exist_ok=True)
    for i in range(a.count):
        noisy = np.clip(im + rng.normal(0, a.sigma, im.shape), 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(os.path.join(a.out, f"{i:04d}.jpg"), quality=90)
    print(f"wrote {a.count} frames to {a.out}")


if __name__ == "__main__":
    main()
