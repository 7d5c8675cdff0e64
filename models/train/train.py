#!/usr/bin/env python3
"""Fine-tune ImageNet MobileNetV2 on FER2013 + FER+ (8 classes), CPU or CUDA.

Example:
  python train.py --data ../../data/fer --weights mobilenet_v2-b0353104.pth \
      --input-size 64 --epochs 8 --out runs/mnv2-64

Writes OUT/best.pt (selected on val: mean of FER2013 and FER+ majority accuracy), OUT/last.pt
and OUT/log.jsonl (one JSON object per epoch).
"""
import argparse
import json
import math
import os
import random
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ferdata  # noqa: E402


def build_model(num_classes=8, weights=None, dropout=0.2):
    m = torchvision.models.mobilenet_v2()
    if weights:
        sd = torch.load(weights, map_location="cpu", weights_only=True)
        m.load_state_dict(sd, strict=True)
    m.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(m.last_channel, num_classes))
    nn.init.normal_(m.classifier[1].weight, 0, 0.01)
    nn.init.zeros_(m.classifier[1].bias)
    return m


def normalise(x01):
    """x01: [B,1,H,W] in [0,1] -> [B,3,H,W] ImageNet-normalised."""
    mean = torch.tensor(ferdata.MEAN, device=x01.device).view(1, 3, 1, 1)
    std = torch.tensor(ferdata.STD, device=x01.device).view(1, 3, 1, 1)
    return (x01.expand(-1, 3, -1, -1) - mean) / std


def eval_batch(img_u8, size):
    """uint8 [B,48,48] tensor -> normalised [B,3,S,S] (bilinear, align_corners=False)."""
    x = img_u8.float().unsqueeze(1) / 255.0
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return normalise(x)


def augment_batch(img_u8, size, gen, a):
    """Random affine (scale, rotation, shift, horizontal flip) + brightness/contrast,
    resampled straight to size x size with one grid_sample."""
    b = img_u8.shape[0]
    dev = img_u8.device
    x = img_u8.float().unsqueeze(1) / 255.0

    def U(lo, hi):
        return torch.rand(b, generator=gen, device="cpu").to(dev) * (hi - lo) + lo

    s = U(1 - a.aug_scale, 1 + a.aug_scale)          # >1 zooms out
    ang = U(-a.aug_rot, a.aug_rot) * math.pi / 180
    tx = U(-a.aug_shift, a.aug_shift) * 2              # fraction of width -> [-1,1] coords
    ty = U(-a.aug_shift, a.aug_shift) * 2
    flip = torch.where(torch.rand(b, generator=gen).to(dev) < 0.5, -1.0, 1.0)
    cos, sin = torch.cos(ang) * s, torch.sin(ang) * s
    theta = torch.stack([torch.stack([cos * flip, -sin, tx], 1),
                         torch.stack([sin * flip, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, (b, 1, size, size), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    c = U(1 - a.aug_contrast, 1 + a.aug_contrast).view(b, 1, 1, 1)
    br = U(-a.aug_bright, a.aug_bright).view(b, 1, 1, 1)
    m = x.mean(dim=(2, 3), keepdim=True)
    x = ((x - m) * c + m + br).clamp(0, 1)
    return normalise(x)


@torch.no_grad()
def predict(model, images_u8, size, device, bs=256, channels_last=False):
    model.eval()
    out = []
    for i in range(0, len(images_u8), bs):
        x = eval_batch(torch.from_numpy(images_u8[i:i + bs]).to(device), size)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        out.append(model(x).float().cpu())
    return torch.cat(out).numpy()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="dir with train/ and val/ (each with labels.csv)")
    ap.add_argument("--weights", required=True, help="torchvision mobilenet_v2 ImageNet state dict (.pth)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--input-size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=0.05, help="peak LR of the one-cycle schedule")
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--wd", type=float, default=5e-5)
    ap.add_argument("--warmup", type=float, default=0.15, help="fraction of steps warming up")
    ap.add_argument("--w-fer2013", type=float, default=0.5, help="weight of the FER2013 one-hot in the target")
    ap.add_argument("--aug-scale", type=float, default=0.10)
    ap.add_argument("--aug-rot", type=float, default=10.0, help="degrees")
    ap.add_argument("--aug-shift", type=float, default=0.08, help="fraction of the width")
    ap.add_argument("--aug-contrast", type=float, default=0.2)
    ap.add_argument("--aug-bright", type=float, default=0.1)
    ap.add_argument("--clip-grad", type=float, default=0.0,
                    help="clip the global gradient norm to this (0 = off, the shipped recipe); "
                         "guards long cycles against the loss spike cycle 2 hit at its epoch 14")
    ap.add_argument("--init", help="start from this train.py checkpoint (a second cycle) instead of the ImageNet head")
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--limit", type=int, default=0, help="use only the first N training rows (smoke runs)")
    ap.add_argument("--max-steps", type=int, default=0, help="stop after N steps (timing)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()

    random.seed(a.seed)
    np.random.seed(a.seed)
    torch.manual_seed(a.seed)
    if a.threads:
        torch.set_num_threads(a.threads)
    dev = torch.device("cuda" if a.device == "auto" and torch.cuda.is_available() else
                       ("cpu" if a.device == "auto" else a.device))
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    os.makedirs(a.out, exist_ok=True)

    t0 = time.time()
    tr = ferdata.load_split(os.path.join(a.data, "train"), limit=a.limit or None)
    va = ferdata.load_split(os.path.join(a.data, "val"))
    targets, keep = ferdata.soft_targets(tr, a.w_fer2013)
    tr_img = torch.from_numpy(tr["images"][keep]).to(dev)
    tr_t = torch.from_numpy(targets).to(dev)
    print(f"loaded {len(keep)}/{len(tr['files'])} train rows, {len(va['files'])} val rows "
          f"in {time.time() - t0:.1f}s; device {dev}, threads {torch.get_num_threads()}", flush=True)

    model = build_model(8, a.weights)
    if a.init:
        model.load_state_dict(torch.load(a.init, map_location="cpu", weights_only=False)["state_dict"])
        print(f"initialised from {a.init}", flush=True)
    model = model.to(dev)
    if a.channels_last:
        model = model.to(memory_format=torch.channels_last)
    decay, no_decay = [], []
    for n_, p in model.named_parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    opt = torch.optim.SGD([{"params": decay, "weight_decay": a.wd},
                           {"params": no_decay, "weight_decay": 0.0}],
                          lr=a.lr, momentum=a.momentum, nesterov=True)
    n = len(tr_img)
    steps_per_epoch = n // a.batch_size
    total = steps_per_epoch * a.epochs
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=a.lr, total_steps=total,
                                                pct_start=a.warmup, anneal_strategy="cos",
                                                div_factor=25.0, final_div_factor=1e3)
    gen = torch.Generator().manual_seed(a.seed)
    config = {k: v for k, v in vars(a).items()}
    config.update(labels=ferdata.LABELS, mean=ferdata.MEAN, std=ferdata.STD, color="gray",
                  channels=3, train_rows=int(n))
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(config, f, indent=1)
    logf = open(os.path.join(a.out, "log.jsonl"), "a")
    best = -1.0
    step = 0
    t_train = time.time()
    for ep in range(a.epochs):
        model.train()
        perm = torch.randperm(n, generator=gen).to(dev)
        t_ep = time.time()
        run_loss = 0.0
        clipped = 0
        norm_sum = 0.0
        for i in range(steps_per_epoch):
            idx = perm[i * a.batch_size:(i + 1) * a.batch_size]
            x = augment_batch(tr_img[idx], a.input_size, gen, a)
            if a.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            logits = model(x)
            loss = -(tr_t[idx] * F.log_softmax(logits, 1)).sum(1).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if a.clip_grad > 0:
                gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), a.clip_grad)
                clipped += int(gnorm > a.clip_grad)
                norm_sum += float(gnorm)
            opt.step()
            sched.step()
            step += 1
            run_loss += loss.item()
            if step % 20 == 0:
                el = time.time() - t_ep
                print(f"ep {ep} step {i + 1}/{steps_per_epoch} loss {run_loss / (i + 1):.4f} "
                      f"lr {sched.get_last_lr()[0]:.4f} {el / (i + 1):.3f}s/step"
                      + (f" grad-norm {norm_sum / (i + 1):.2f} clipped {clipped}" if a.clip_grad > 0 else ""),
                      flush=True)
            if a.max_steps and step >= a.max_steps:
                print(f"max steps reached: {(time.time() - t_train) / step:.3f}s/step", flush=True)
                return
        logits = predict(model, va["images"], a.input_size, dev, channels_last=a.channels_last)
        acc = ferdata.accuracies(logits, va)
        score = (acc["fer2013_acc"] + acc["ferplus_acc"]) / 2
        rec = {"epoch": ep + 1, "train_loss": run_loss / steps_per_epoch, **acc, "score": score,
               "epoch_s": time.time() - t_ep, "elapsed_s": time.time() - t_train}
        if a.clip_grad > 0:  # only measured when clipping is on
            rec.update(clipped_steps=clipped, mean_grad_norm=norm_sum / steps_per_epoch)
        print(json.dumps(rec), flush=True)
        logf.write(json.dumps(rec) + "\n")
        logf.flush()
        ck = {"state_dict": model.state_dict(), "config": config, "epoch": ep + 1, "val": acc}
        torch.save(ck, os.path.join(a.out, "last.pt"))
        if score > best:
            best = score
            torch.save(ck, os.path.join(a.out, "best.pt"))
            print(f"new best {score:.4f} at epoch {ep + 1}", flush=True)
    print(f"done: {a.epochs} epochs in {time.time() - t_train:.0f}s, best score {best:.4f}", flush=True)


if __name__ == "__main__":
    main()
