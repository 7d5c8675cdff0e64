#!/usr/bin/env python3
"""Copies of a class-per-folder view of face crops, each crop shrunk to N×N pixels and scaled
back to its own size: what the classifier sees of a face that was N pixels wide in the frame
(the daemon crops the detected box plus its margin and resizes it to the model's input).

    python3 models/tools/small_faces.py VIEW_DIR OUT_DIR [--sizes 24,32,40]
    cargo run --release -- eval --data OUT_DIR/24      # and /32, /40

VIEW_DIR is a `make_views.py` tree (DIR/<label>/*.png). Down: Pillow's box filter (pixel
averaging, as a camera's sensor and the daemon's resize of a larger frame would); back: bilinear.
Needs Pillow.
"""
import argparse
import pathlib

from PIL import Image


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("view", type=pathlib.Path)
    ap.add_argument("out", type=pathlib.Path)
    ap.add_argument("--sizes", default="24,32,40")
    a = ap.parse_args()
    for size in [int(s) for s in a.sizes.split(",")]:
        n = 0
        for src in sorted(a.view.glob("*/*")):
            if not src.is_file():
                continue
            img = Image.open(src)
            small = img.resize((size, size), Image.BOX).resize(img.size, Image.BILINEAR)
            dst = a.out / str(size) / src.parent.name / (src.stem + ".png")
            dst.parent.mkdir(parents=True, exist_ok=True)
            small.save(dst)
            n += 1
        print(f"{size}: {n} crops -> {a.out / str(size)}")


if __name__ == "__main__":
    main()
