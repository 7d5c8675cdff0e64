#!/usr/bin/env bash
# The whole v2 training + export as ONE command on a CUDA GPU, everything written to OUT:
#
#   models/train/gpu_run.sh OUT                 # defaults below; ~20 epochs/min on an H100 is the
#                                               # planning figure, see models/README.md for measured
#   SIZE=96 EPOCHS=60 models/train/gpu_run.sh OUT   # a larger-input teacher / longer schedule
#   DEVICE=cpu LIMIT=256 VAL_LIMIT=100 CALIB_N=20 EPOCHS=1 models/train/gpu_run.sh /tmp/x  # CPU smoke test
#
# Data are preloaded once as uint8 tensors on the device, augmentation (one affine grid_sample
# per batch + brightness/contrast) runs on the device, the forward pass under bf16 autocast
# (loss in float32), batch 256, channels_last. OUT gets train.log, log.jsonl, ckpt.pt (every
# epoch; rerunning the same command resumes), best-*.pt, the three .onnx files and the
# onnxruntime / tract reports. Knobs as in reproduce.sh (EPOCHS, LR, SIZE, BATCH, CKPT, ...).
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 OUT" >&2; exit 2; }
out="$(mkdir -p "$1" && cd "$1" && pwd)"
here="$(cd "$(dirname "$0")" && pwd)"
export DEVICE="${DEVICE:-cuda}" AMP="${AMP:-bf16}" BATCH="${BATCH:-256}" LR="${LR:-0.1}" \
    EPOCHS="${EPOCHS:-40}" THREADS="${THREADS:-4}" RUN="$out" OUTDIR="$out"
if [ "$DEVICE" = cuda ]; then
    "${PYTHON:-python3}" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name(0))"
fi
exec "$here/reproduce.sh"
