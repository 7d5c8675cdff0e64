#!/usr/bin/env python3
"""Markdown tables for the model card from `emonet eval --json` outputs (tract) or from
export.py's metrics-ort.json (onnxruntime).

  python card_tables.py --eval fp32=eval-fp32-fer2013.json int8=eval-int8-fer2013.json
  python card_tables.py --ort runs/.../metrics-ort.json --view fer2013_val
"""
import argparse
import json


def table(reports):
    names = list(reports)
    labels = list(next(iter(reports.values()))["per_class"])
    head = "| class | support | " + " | ".join(f"{n} P | {n} R | {n} F1" for n in names) + " |"
    sep = "|---|---:|" + "---:|" * (3 * len(names))
    rows = [head, sep]
    for c in labels:
        sup = next(iter(reports.values()))["per_class"][c]["support"]
        cells = []
        for n in names:
            pc = reports[n]["per_class"][c]
            cells += [f"{pc['precision']:.3f}", f"{pc['recall']:.3f}", f"{pc['f1']:.3f}"]
        rows.append(f"| {c} | {sup} | " + " | ".join(cells) + " |")
    rows.append("| **accuracy** | " + str(next(iter(reports.values()))["n"]) + " | " +
                " | ".join(f"| **{reports[n]['accuracy'] * 100:.2f} %** |" for n in names).replace("||", "|") + " |")
    rows.append("| **macro-F1** | | " +
                " | ".join(f"| **{reports[n]['macro_f1']:.4f}** |" for n in names).replace("||", "|") + " |")
    return "\n".join(rows)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--eval", nargs="*", default=[], help="NAME=emonet-eval.json")
    ap.add_argument("--ort")
    ap.add_argument("--view", default="fer2013_val")
    a = ap.parse_args()
    reps = {}
    for s in a.eval:
        n, p = s.split("=", 1)
        reps[n] = json.load(open(p))
    if a.ort:
        r = json.load(open(a.ort))
        for k in ("fp32", "int8"):
            reps[f"ort {k}"] = r[k][a.view]
    print(table(reps))


if __name__ == "__main__":
    main()
