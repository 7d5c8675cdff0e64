#!/usr/bin/env bash
# The v2 training on a CUDA GPU as ONE command of about 8 minutes: a 112-px teacher, then the
# 64-px student distilled from it, everything written to OUT. The export (onnxruntime + tract
# checks) runs afterwards on any machine with the venv: see models/README.md.
#
#   models/train/gpu_run.sh OUT                  # defaults below
#   DEVICE=cpu LIMIT=256 VAL_LIMIT=100 EPOCHS=1 TEACHER_EPOCHS=1 TEACHER_BUDGET_S=0 BUDGET_S=0 \
#       models/train/gpu_run.sh /tmp/x           # CPU smoke test (tests/... run it too)
#
# Data are preloaded once as uint8 tensors on the device, augmentation (one affine grid_sample
# per batch + brightness/contrast, the teacher's view from the same draw) runs on the device, the
# forward pass under bf16 autocast (loss in float32), batch 256, channels_last. The epochs of each
# phase are chosen to fit TEACHER_BUDGET_S / BUDGET_S seconds (train.py --budget-s: a timing
# probe; capped by TEACHER_EPOCHS / EPOCHS). OUT gets train.log, log.jsonl, config.json, ckpt.pt
# (every epoch; rerunning the same command resumes), best-*.pt, last.pt, and teacher/ with the
# same. Knobs as in reproduce.sh.
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 OUT" >&2; exit 2; }
out="$(mkdir -p "$1" && cd "$1" && pwd)"
here="$(cd "$(dirname "$0")" && pwd)"
export DEVICE="${DEVICE:-cuda}" AMP="${AMP:-bf16}" BATCH="${BATCH:-256}" LR="${LR:-0.1}" \
    EPOCHS="${EPOCHS:-80}" TEACHER_SIZE="${TEACHER_SIZE:-112}" TEACHER_EPOCHS="${TEACHER_EPOCHS:-50}" \
    TEACHER_BUDGET_S="${TEACHER_BUDGET_S:-180}" BUDGET_S="${BUDGET_S:-230}" \
    THREADS="${THREADS:-4}" EXPORT="${EXPORT:-0}" RUN="$out" OUTDIR="$out"
if [ "$DEVICE" = cuda ]; then
    "${PYTHON:-python3}" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.__version__, torch.cuda.get_device_name(0))"
fi
exec "$here/reproduce.sh"
