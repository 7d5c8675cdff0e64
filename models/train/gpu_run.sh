#!/usr/bin/env bash
# The shipped training recipe (reproduce.sh's defaults: a 112-px teacher for 23 epochs, then the
# 64-px student distilled from it for 42) on a CUDA GPU as ONE command: about 7 minutes on an
# H100 (teacher 162 s, student 234 s), everything written to OUT. The export (onnxruntime + tract
# checks) runs afterwards on any machine with the venv: see models/README.md.
#
#   models/train/gpu_run.sh OUT                  # defaults below
#   TEACHER_BUDGET_S=170 BUDGET_S=210 models/train/gpu_run.sh OUT   # epochs fitted to a time slot
#   DEVICE=cpu AMP=none LIMIT=256 VAL_LIMIT=100 EPOCHS=1 TEACHER_EPOCHS=1 BATCH=64 \
#       models/train/gpu_run.sh /tmp/x           # CPU smoke test
#
# Data are preloaded once as uint8 tensors on the device, augmentation (one affine grid_sample
# per batch + brightness/contrast, the teacher's view from the same draw) runs on the device, the
# forward pass under bf16 autocast (loss in float32), batch 256, channels_last. The epochs of each
# phase may be fitted to TEACHER_BUDGET_S / BUDGET_S seconds instead (train.py --budget-s: a
# timing probe; capped by TEACHER_EPOCHS / EPOCHS). OUT gets train.log, log.jsonl, config.json, ckpt.pt
# (every epoch; rerunning the same command resumes), best-*.pt, last.pt, and teacher/ with the
# same. Knobs as in reproduce.sh.
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 OUT" >&2; exit 2; }
out="$(mkdir -p "$1" && cd "$1" && pwd)"
here="$(cd "$(dirname "$0")" && pwd)"
export DEVICE="${DEVICE:-cuda}" AMP="${AMP:-bf16}" THREADS="${THREADS:-4}" EXPORT="${EXPORT:-0}" \
    RUN="$out" OUTDIR="$out"
if [ "$DEVICE" = cuda ]; then
    "${PYTHON:-python3}" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.__version__, torch.cuda.get_device_name(0))"
fi
exec "$here/reproduce.sh"
