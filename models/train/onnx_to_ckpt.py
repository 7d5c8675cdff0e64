#!/usr/bin/env python3
"""Turn an exported two-head MobileNetV2 file (fp32 ONNX, BatchNorm folded into the convolutions
by export.py) back into a train.py checkpoint, so that a shipped file can serve as a teacher
(`train.py --teacher CKPT`, `reproduce.sh TEACHER_CKPT=CKPT`) when its training run is gone.

The file's Conv nodes come in the order of the network's Conv2d modules; each node's folded
weight goes to its Conv2d (shapes checked) and its folded bias to the BatchNorm after it, which
is set to the identity (running mean 0, running variance 1 - eps, scale 1). In eval mode the network then
computes what the file does; the script checks that on val images with onnxruntime.

  python3 models/train/onnx_to_ckpt.py models/emotion-mnv2-fp32.onnx \
      models/train/runs/shipped/ckpt-from-onnx.pt --data data/fer
"""
import argparse
import os

import numpy as np
import onnx
import torch
from onnx import numpy_helper

import ferdata
import train
from onnx_io import preprocess
from onnx_io import run as run_ort


def model_from_onnx(onnx_path):
    """(train.TwoHead holding the file's weights, in eval mode; heads {name: labels}; input size)."""
    m = onnx.load(onnx_path)
    meta = {p.key: p.value for p in m.metadata_props}
    heads = {k: meta[f"emonet.labels.{k}"].split(",") for k in meta["emonet.outputs"].split(",")}
    size = int(meta["emonet.input_height"])
    init = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in m.graph.initializer}
    model = train.TwoHead(heads)
    modules = dict(model.named_modules())
    sd = model.state_dict()
    # Conv nodes come in the order the network runs its Conv2d modules (definition order here).
    convs = iter([name for name, mod in modules.items() if isinstance(mod, torch.nn.Conv2d)])
    for node in m.graph.node:
        if node.op_type == "Conv":
            path = next(convs)
            w, b = init[node.input[1]], init[node.input[2]]
            if sd[f"{path}.weight"].shape != w.shape:
                raise SystemExit(f"{onnx_path}: Conv node {node.name} for {path} has weights {tuple(w.shape)}, the "
                                 f"network {tuple(sd[path + '.weight'].shape)}: not a two-head MobileNetV2 export")
            sd[f"{path}.weight"] = w
            bn = bn_of(path)
            sd[f"{bn}.weight"] = torch.ones_like(b)
            sd[f"{bn}.bias"] = b
            sd[f"{bn}.running_mean"] = torch.zeros_like(b)
            sd[f"{bn}.running_var"] = torch.full_like(b, 1 - modules[bn].eps)
        elif node.op_type == "Gemm":
            for name in node.input[1:]:
                sd[name] = init[name]
    if next(convs, None) is not None:
        raise SystemExit(f"{onnx_path}: fewer Conv nodes than the network has: not a two-head MobileNetV2 export")
    model.load_state_dict(sd)
    return model.eval(), heads, size


def bn_of(conv_path):
    """The BatchNorm that follows a torchvision MobileNetV2 Conv2d: `….N` -> `….N+1`."""
    head, last = conv_path.rsplit(".", 1)
    return f"{head}.{int(last) + 1}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("onnx")
    ap.add_argument("out")
    ap.add_argument("--data", required=True, help="dir with val/ (the check)")
    ap.add_argument("--val-limit", type=int, default=500)
    a = ap.parse_args()
    model, heads, size = model_from_onnx(a.onnx)
    va = ferdata.load_split(os.path.join(a.data, "val"), limit=a.val_limit)
    x = preprocess(va["images"], size)
    with torch.no_grad():
        ours = dict(zip(model.head_names, (t.numpy() for t in model(torch.from_numpy(x)))))
    ref, _ = run_ort(a.onnx, x, 2)
    diff = max(float(np.abs(ours[k] - ref[k]).max()) for k in ref)
    print(f"{a.onnx}: max |logit diff| PyTorch vs onnxruntime on {len(x)} val images: {diff:.2e}")
    if diff > 1e-3:
        raise SystemExit("conversion does not reproduce the file")
    cfg = {"heads": heads, "input_size": size, "backbone": "mnv2", "source_onnx": os.path.abspath(a.onnx)}
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    torch.save({"state_dict": model.state_dict(), "config": cfg, "epoch": None, "val": {}}, a.out)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
