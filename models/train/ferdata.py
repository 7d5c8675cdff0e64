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
# The two heads of the v2 model: output name -> labels, in output order. `ferplus` (the product's
# labels) comes first, so a reader that only knows one output gets it.
HEADS = {"ferplus": LABELS, "fer2013": FER2013_LABELS}
# ImageNet normalisation (the grayscale value is replicated to 3 channels).
MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]


def packed_images(split_dir, n):
    """The split's images from `images.npy` (uint8 [N,48,48] in labels.csv row order, written by
    gpu_pack.py where the PNGs are not shipped), or None when the split has PNG files instead."""
    p = os.path.join(split_dir, "images.npy")
    if not os.path.exists(p):
        return None
    a = np.load(p, mmap_mode="r")
    if a.ndim != 3 or a.shape[1:] != (48, 48) or len(a) < n:
        raise ValueError(f"{p}: shape {a.shape}, expected at least [{n}, 48, 48]")
    return a


def load_split(split_dir, limit=None):
    """Return dict with
    images   uint8 [N, 48, 48]
    fer2013  int64 [N]   class index in LABELS or -1 when the original label is missing
    votes    float32 [N, 8] FER+ votes in LABELS order (unknown/NF dropped), raw counts
    ferplus  int64 [N]   FER+ majority class (argmax over all 10 columns, -1 if the top vote is
                         unknown/NF or tied) -- the protocol of make_views.py --labels ferplus
    ferplus_clean int64 [N] the FER+ paper's protocol (make_views.py --labels ferplus-clean):
                         single votes dropped, class kept when one emotion holds more than half of
                         the remaining votes (unknown/NF counted), else -1
    clean_votes float32 [N, 8] FER+ votes in LABELS order with single votes dropped
    clean_other float32 [N] unknown + NF votes left after dropping single votes
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
    clean = np.full(n, -1, dtype=np.int64)
    clean_votes = np.zeros((n, 8), dtype=np.float32)
    clean_other = np.zeros(n, dtype=np.float32)
    all_cols = VOTE_COLS + ["unknown", "NF"]
    packed = packed_images(split_dir, n)
    for i, row in enumerate(rows):
        if packed is not None:
            images[i] = packed[i]
        else:
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
        cv = [x if x > 1 else 0 for x in v]
        for j, c in enumerate(VOTE_TO_CLASS):
            clean_votes[i, c] = cv[j]
        clean_other[i] = cv[8] + cv[9]
        top = max(cv)
        if top * 2 > sum(cv) and cv.index(top) < 8:
            clean[i] = VOTE_TO_CLASS[cv.index(top)]
    return {"images": images, "fer2013": fer, "votes": votes, "ferplus": ferplus,
            "ferplus_clean": clean, "clean_votes": clean_votes, "clean_other": clean_other,
            "files": [r["file"] for r in rows]}


def head_targets(d, ferplus_labels="clean"):
    """Per-head training targets of the two-head model, with a mask where a head has no label.

    ferplus: the FER+ vote distribution over the 8 emotions ("probability" labels). With
      `clean` (the FER+ paper's cleaning): single votes dropped as outliers, unknown/NF mass
      dropped, renormalised; masked when no emotion vote remains or unknown + NF together
      outvote the top emotion.
      With `raw`: all votes, unknown/NF dropped, masked when no emotion vote. With `majority`:
      one-hot of the clean majority (make_views.py --labels ferplus-clean), masked without one.
    fer2013: one-hot of the original label, masked when it is missing.
    Returns {"ferplus": (float32 [N, 8], bool [N]), "fer2013": (float32 [N, 7], bool [N])}."""
    n = len(d["fer2013"])
    if ferplus_labels == "clean":
        v = d["clean_votes"]
        s = v.sum(1)
        mask = (s > 0) & (v.max(1) >= d["clean_other"])
    elif ferplus_labels == "raw":
        v = d["votes"]
        s = v.sum(1)
        mask = s > 0
    elif ferplus_labels == "majority":
        mask = d["ferplus_clean"] >= 0
        v = np.zeros((n, 8), dtype=np.float32)
        v[np.nonzero(mask)[0], d["ferplus_clean"][mask]] = 1.0
        s = v.sum(1)
    else:
        raise ValueError(f"unknown ferplus label mode {ferplus_labels!r}")
    tp = np.where(mask[:, None], v / np.maximum(s, 1e-9)[:, None], 0.0).astype(np.float32)
    m13 = d["fer2013"] >= 0
    t13 = np.zeros((n, 7), dtype=np.float32)
    t13[np.nonzero(m13)[0], d["fer2013"][m13]] = 1.0
    return {"ferplus": (tp, mask), "fer2013": (t13, m13)}


def head_reports(outputs, d):
    """Per-head val reports of the two-head model. outputs: {"ferplus": [N, 8], "fer2013": [N, 7]}
    (logits, numpy). ferplus head on both FER+ views (majority and clean) and, restricted to its
    first 7 classes, on the FER2013 view; fer2013 head on the FER2013 view."""
    out = {}
    fp, f13 = outputs["ferplus"], outputs["fer2013"]
    for view, key in (("ferplus_clean_val", "ferplus_clean"), ("ferplus_val", "ferplus")):
        m = d[key] >= 0
        out[f"ferplus/{view}"] = per_class_report(fp[m].argmax(1), d[key][m], LABELS)
    m = d["fer2013"] >= 0
    out["fer2013/fer2013_val"] = per_class_report(f13[m].argmax(1), d["fer2013"][m], FER2013_LABELS)
    out["ferplus/fer2013_val"] = per_class_report(fp[m, :7].argmax(1), d["fer2013"][m], FER2013_LABELS)
    return out


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
