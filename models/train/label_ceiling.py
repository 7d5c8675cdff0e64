#!/usr/bin/env python3
"""How far apart are the two accuracy bars of one model? A ceiling from the labels alone.

Every FER image carries an original FER2013 label and FER+ votes, and one classifier gives one
prediction per image, so on an image whose FER2013 label and FER+ majority differ it can be right
in at most one of the two views. (A FER+ majority of `contempt` is the exception: FER2013 has no
contempt, the FER2013 view scores the best of its 7 classes, so both can be right.) This script
counts those forced errors and prints what a single model that is perfect everywhere else could
reach on one view while holding the other at its bar.

  python models/train/label_ceiling.py --data data/fer/val [--bar-fer2013 0.72] [--bar-ferplus 0.88]
      [--model-fer2013 0.6612 --model-ferplus 0.7809]
"""
import argparse
import math
import os
from collections import Counter

import ferdata


def ceiling(f13, fp, bar13, barp):
    """f13, fp: int arrays of FER2013 labels and FER+ majorities (-1 = not in that view)."""
    in13, inp = f13 >= 0, fp >= 0
    both = in13 & inp
    contempt = ferdata.LABELS.index("contempt")
    forced = both & (f13 != fp) & (fp != contempt)
    n13, np_, nf = int(in13.sum()), int(inp.sum()), int(forced.sum())
    attainable = n13 + np_ - nf  # correct view-labels of the best possible single model
    need13, needp = math.ceil(bar13 * n13), math.ceil(barp * np_)
    return {
        "n_fer2013": n13, "n_ferplus": np_, "n_both": int(both.sum()), "forced_errors": nf,
        "attainable_correct": attainable, "bars_need_correct": need13 + needp,
        "bars_share_of_attainable": (need13 + needp) / attainable,
        "avoidable_errors_allowed": attainable - need13 - needp,
        "max_fer2013_at_ferplus_bar": (attainable - needp) / n13,
        "max_ferplus_at_fer2013_bar": (attainable - need13) / np_,
        "ferplus_majority_scored_as_fer2013": float((f13[both] == fp[both]).sum() / n13),
        "fer2013_label_scored_as_ferplus": float((f13[both] == fp[both]).sum() / np_),
        "top_disagreements": Counter(
            (ferdata.LABELS[a], ferdata.LABELS[b]) for a, b in zip(f13[forced], fp[forced])
        ).most_common(6),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="a split dir with labels.csv (e.g. data/fer/val)")
    ap.add_argument("--bar-fer2013", type=float, default=0.72)
    ap.add_argument("--bar-ferplus", type=float, default=0.88)
    ap.add_argument("--model-fer2013", type=float, help="a model's FER2013-view accuracy, to place it")
    ap.add_argument("--model-ferplus", type=float, help="the same model's FER+-view accuracy")
    a = ap.parse_args()

    d = ferdata.load_split(a.data)
    c = ceiling(d["fer2013"], d["ferplus"], a.bar_fer2013, a.bar_ferplus)
    print(f"{a.data}: {c['n_fer2013']} images in the FER2013 view, {c['n_ferplus']} in the FER+ view, "
          f"{c['n_both']} in both")
    print(f"forced errors (labels disagree, neither is FER+ contempt): {c['forced_errors']} "
          f"({c['forced_errors'] / c['n_both']:.1%} of the shared images)")
    print("  most common (FER2013 label, FER+ majority):",
          ", ".join(f"{x}/{y} {k}" for (x, y), k in c["top_disagreements"]))
    print(f"a predictor of the FER+ majority scores {c['ferplus_majority_scored_as_fer2013']:.1%} on the "
          f"FER2013 view; a predictor of the FER2013 label scores {c['fer2013_label_scored_as_ferplus']:.1%} "
          f"on the FER+ view")
    print(f"correct view-labels attainable by one model: {c['attainable_correct']}; the bars "
          f"({a.bar_fer2013:.0%} / {a.bar_ferplus:.0%}) need {c['bars_need_correct']} = "
          f"{c['bars_share_of_attainable']:.1%} of them, i.e. at most {c['avoidable_errors_allowed']} "
          f"avoidable errors over both views")
    print(f"holding FER+ at {a.bar_ferplus:.0%}, FER2013 can reach at most {c['max_fer2013_at_ferplus_bar']:.1%}; "
          f"holding FER2013 at {a.bar_fer2013:.0%}, FER+ at most {c['max_ferplus_at_fer2013_bar']:.1%}")
    if a.model_fer2013 is not None and a.model_ferplus is not None:
        got = round(a.model_fer2013 * c["n_fer2013"]) + round(a.model_ferplus * c["n_ferplus"])
        print(f"the model ({a.model_fer2013:.2%} / {a.model_ferplus:.2%}) has {got} correct = "
              f"{got / c['attainable_correct']:.1%} of the attainable; "
              f"{c['attainable_correct'] - got} avoidable errors")


if __name__ == "__main__":
    main()
