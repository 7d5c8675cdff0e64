"""FER2013 / FER+ data loading shared by train.py and export.py.

Every image of the split directory (48x48 grayscale PNG) is loaded once into a uint8 numpy array.
Labels (see ../shared/datasets/README.md): `fer2013` single label (may be empty) and ten FER+ vote
columns (neutral, happiness, surprise, sadness, anger, disgust, fear, contempt, unknown, NF).
"""
import csv
import os

import numpy as np
from PIL import Image

# Output order of the model (and the `emonet.labels` metadata).
LABELS = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise", "contempt"]
FER2013_LABELS = LABELS[:7]
# FER+ vote columns -> model class index (unknown and NF have none).
VOTE_COLS = ["neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt"]
VOTE_TO_CLASS = [4, 3, 6, 5, 0, 1, 2, 7]
# ImageNet normalisation (the grayscale value is replicated to 3 channels).
MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]


def load_split(split_dir, limit=None):
    """Return dict with
    images   uint8 [N, 48, 48]
    fer2013  int64 [N]   class index in LABELS or -1 when the original label is missing
    votes    float32 [N, 8] FER+ votes in LABELS order (unknown/NF dropped), raw counts
    ferplus  int64 [N]   FER+ majority class (argmax over all 10 columns, -1 if the top vote is
                         unknown/NF or tied) -- the protocol of make_views.py --labels ferplus
    files    list[str]
    """
    rows = []
    with open(os.path.join(split_dir, "labels.csv"), newline="") as f:
        for row in csv.DictReader(f):
            rows.append(row)
    if limit:
        rows = rows[:limit]
    n = len(rows)
    images = np.empty((n, 48, 48), dtype=np.uint8)
    fer = np.full(n, -1, dtype=np.int64)
    votes = np.zeros((n, 8), dtype=np.float32)
    ferplus = np.full(n, -1, dtype=np.int64)
    all_cols = VOTE_COLS + ["unknown", "NF"]
    for i, row in enumerate(rows):
        with Image.open(os.path.join(split_dir, row["file"])) as im:
            a = np.asarray(im.convert("L"), dtype=np.uint8)
        if a.shape != (48, 48):
            a = np.asarray(Image.fromarray(a).resize((48, 48), Image.BILINEAR))
        images[i] = a
        if row["fer2013"]:
            fer[i] = LABELS.index(row["fer2013"])
        v = [int(row[c]) for c in all_cols]
        for j, c in enumerate(VOTE_TO_CLASS):
            votes[i, c] = v[j]
        top = max(v)
        if v.count(top) == 1 and v.index(top) < 8:
            ferplus[i] = VOTE_TO_CLASS[v.index(top)]
    return {"images": images, "fer2013": fer, "votes": votes, "ferplus": ferplus,
            "files": [r["file"] for r in rows]}


def soft_targets(d, w_fer2013=0.5):
    """Soft training target per row: w * one-hot(FER2013) + (1-w) * normalised FER+ votes
    (8 classes, unknown/NF mass dropped). Rows with only one usable label use it alone; rows
    with none are dropped. Returns (targets float32 [M, 8], kept row indices [M])."""
    n = len(d["fer2013"])
    t = np.zeros((n, 8), dtype=np.float32)
    keep = np.zeros(n, dtype=bool)
    vs = d["votes"].sum(1)
    for i in range(n):
        has_f = d["fer2013"][i] >= 0
        has_v = vs[i] > 0
        if has_f and has_v:
            t[i] = (1 - w_fer2013) * d["votes"][i] / vs[i]
            t[i, d["fer2013"][i]] += w_fer2013
        elif has_v:
            t[i] = d["votes"][i] / vs[i]
        elif has_f:
            t[i, d["fer2013"][i]] = 1.0
        else:
            continue
        keep[i] = True
    idx = np.nonzero(keep)[0]
    return t[idx], idx


def accuracies(logits, d):
    """FER2013 accuracy (argmax restricted to the 7 FER2013 classes, rows with a label) and FER+
    majority accuracy (argmax over 8 classes, rows with a majority). logits: [N, 8] numpy."""
    out = {}
    m = d["fer2013"] >= 0
    p7 = logits[:, :7].argmax(1)
    out["fer2013_acc"] = float((p7[m] == d["fer2013"][m]).mean())
    out["fer2013_n"] = int(m.sum())
    m = d["ferplus"] >= 0
    p8 = logits.argmax(1)
    out["ferplus_acc"] = float((p8[m] == d["ferplus"][m]).mean())
    out["ferplus_n"] = int(m.sum())
    return out


def per_class_report(pred, truth, labels):
    """Per-class precision/recall/F1/support, accuracy and macro-F1 (classes = labels)."""
    k = len(labels)
    cm = np.zeros((k, k), dtype=np.int64)
    for t, p in zip(truth, pred):
        cm[t, p] += 1
    rep = {}
    f1s = []
    for c in range(k):
        tp = cm[c, c]
        prec = tp / cm[:, c].sum() if cm[:, c].sum() else 0.0
        rec = tp / cm[c].sum() if cm[c].sum() else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        f1s.append(f1)
        rep[labels[c]] = {"precision": float(prec), "recall": float(rec), "f1": float(f1),
                          "support": int(cm[c].sum())}
    return {"n": int(cm.sum()), "accuracy": float(np.trace(cm) / max(cm.sum(), 1)),
            "macro_f1": float(np.mean(f1s)), "per_class": rep, "confusion": cm.tolist()}
