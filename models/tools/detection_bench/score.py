"""Scores detector output against the benchmark's ground truth.

    python3 models/tools/detection_bench/score.py TRUTH.json NAME=DETS.jsonl[@THRESHOLD] …

DETS.jsonl is what `cargo run --release --example detect_frames` prints: one line per frame,
{"frame": …, "ms": …, "faces": [[x, y, w, h, score], …]} in pixels; detections scoring below
THRESHOLD (default: keep all) are dropped first, so one low-threshold run can be scored at
several thresholds. Prints markdown tables: recall per face width (pasted faces: colour
portraits and the 1927 group photo's faces apart; the group photo's own windows), false
positives per face-free frame, and the detector's time per frame (median, 90th percentile).

A detection matches a face when their IoU is at least MATCH_IOU; each face matches at most one
detection, best scores first. An unmatched detection is a false positive unless it lies inside
a pasted region (a neighbour's face in the group photo's context) or matches a face cut by the
window edge (`ignore`).
"""

import json
import statistics
import sys

MATCH_IOU = 0.3


def iou(a, b):
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def inside(det, region):
    cx, cy = det[0] + det[2] / 2, det[1] + det[3] / 2
    return region[0] <= cx <= region[0] + region[2] and region[1] <= cy <= region[1] + region[3]


def score_frame(truth, dets, source=None):
    """(faces found, faces, false positives) of one frame; with `source`, only faces from that
    source count as faces (detections of the others are neither found nor false)."""
    faces = truth["faces"]
    srcs = truth.get("sources", [None] * len(faces))
    taken = [False] * len(faces)
    fp = 0
    for d in sorted(dets, key=lambda d: -d[4]):
        best, best_iou = None, MATCH_IOU
        for i, f in enumerate(faces):
            v = iou(d, f)
            if not taken[i] and v >= best_iou:
                best, best_iou = i, v
        if best is not None:
            taken[best] = True
        elif any(inside(d, r) for r in truth.get("regions", [])):
            pass
        elif any(iou(d, f) >= MATCH_IOU for f in truth.get("ignore", [])):
            pass
        else:
            fp += 1
    keep = [source is None or group(k) == source for k in srcs]
    found = sum(t for t, k in zip(taken, keep) if k)
    return found, sum(keep), fp


def group(source):
    return "gray" if source == "solvay" else "colour"


def main():
    truth = json.load(open(sys.argv[1]))["frames"]
    runs = {}
    for arg in sys.argv[2:]:
        name, path = arg.split("=", 1)
        path, _, thr = path.partition("@")
        thr = float(thr) if thr else 0.0
        runs[name] = {}
        for line in open(path):
            if line.strip():
                r = json.loads(line)
                r["faces"] = [d for d in r["faces"] if d[4] >= thr]
                runs[name][r["frame"]] = r
    names = list(runs)
    tables = (("sweep", "colour", "Pasted colour portraits (2 people × 16 placements)"),
              ("sweep", "gray", "Pasted faces of the 1927 group photo (29 × 2 mirror images)"),
              ("scene", None, "The 1927 group photo itself, in 640×480 windows"))
    for set_name, source, title in tables:
        widths = sorted({t["width_px"] for t in truth.values() if t["set"] == set_name})
        print(f"\n{title}: recall per face width (false positives in these frames)\n")
        print("| face width px | % of 640 | faces | " + " | ".join(names) + " |")
        print("|---|---|---|" + "---|" * len(names))
        for w in widths:
            frames = [k for k, t in truth.items() if t["set"] == set_name and t["width_px"] == w]
            cells = []
            n_faces = 0
            for n in names:
                found = fps = total = 0
                for k in frames:
                    f, t, p = score_frame(truth[k], runs[n][k]["faces"], source)
                    found, total, fps = found + f, total + t, fps + p
                n_faces = total
                cells.append(f"{100 * found / total:.1f} % ({fps})")
            print(f"| {w} | {100 * w / 640:.1f} | {n_faces} | " + " | ".join(cells) + " |")
    empty = [k for k, t in truth.items() if t["set"] == "empty"]
    print(f"\nFace-free frames ({len(empty)}): false positives per frame\n")
    print("| " + " | ".join(names) + " |")
    print("|" + "---|" * len(names))
    print("| " + " | ".join(
        f"{sum(score_frame(truth[k], runs[n][k]['faces'])[2] for k in empty) / len(empty):.3f}"
        for n in names) + " |")
    print("\nDetector time per 640×480 frame, ms (all frames): median / 90th percentile\n")
    print("| " + " | ".join(names) + " |")
    print("|" + "---|" * len(names))
    cells = []
    for n in names:
        ms = sorted(r["ms"] for r in runs[n].values())
        cells.append(f"{statistics.median(ms):.2f} / {ms[int(0.9 * (len(ms) - 1))]:.2f}")
    print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
