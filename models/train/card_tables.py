#!/usr/bin/env python3
"""Markdown tables for the model card from `emonet eval --json` outputs (tract), from
tract_check.py's metrics-tract.json (tract, Python preprocessing) or from export.py's
metrics-ort.json (onnxruntime). Views of two-head files: `ferplus/ferplus_clean_val`,
`ferplus/ferplus_val`, `fer2013/fer2013_val`, `ferplus/fer2013_val` (head/view).

  python card_tables.py --eval fp32=eval-fp32-fer2013.json int8=eval-int8-fer2013.json
  python card_tables.py --ort runs/.../metrics-ort.json --view fer2013/fer2013_val
  python card_tables.py --tract runs/.../metrics-tract.json --view ferplus/ferplus_clean_val --confusion w8
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
    ap.add_argument("--tract", help="tract_check.py report: one column group per model file")
    ap.add_argument("--view", default="fer2013_val")
    ap.add_argument("--confusion", help="also print this column group's confusion matrix")
    a = ap.parse_args()
    reps = {}
    for s in a.eval:
        n, p = s.split("=", 1)
        reps[n] = json.load(open(p))
    if a.ort:
        r = json.load(open(a.ort))
        for k in ("fp32", "int8", "w8"):
            if k in r:
                reps[f"ort {k}"] = r[k][a.view]
    if a.tract:
        r = json.load(open(a.tract))
        for f, v in r.items():
            if isinstance(v, dict) and "tract" in v:
                reps[f.replace("emotion-mnv2-", "").replace(".onnx", "")] = v["tract"][a.view]
    print(table(reps))
    if a.confusion:
        rep = reps[a.confusion]
        labels = list(rep["per_class"])
        print("\n```\n" + " " * 9 + " ".join(f"{c[:5]:>5}" for c in labels))
        for c, row in zip(labels, rep["confusion"]):
            print(f"{c:9s}" + " ".join(f"{v:5d}" for v in row))
        print("```")


if __name__ == "__main__":
    main()
