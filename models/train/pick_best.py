#!/usr/bin/env python3
"""Print the path of the checkpoint with the best val score (mean of FER2013 and FER+ majority
accuracy, as logged by train.py); the first one wins ties."""
import sys

import torch

best, best_score = None, -1.0
for p in sys.argv[1:]:
    v = torch.load(p, map_location="cpu", weights_only=False)["val"]
    score = (v["fer2013_acc"] + v["ferplus_acc"]) / 2
    print(f"{p}: {score:.4f}", file=sys.stderr)
    if score > best_score:
        best, best_score = p, score
print(best)
