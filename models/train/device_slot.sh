#!/usr/bin/env bash
# gpu_run.sh on a borrowed GPU machine that has no copy of the data: unpack the shards that
# gpu_pack.py made (carried there by earlier calls), train, and keep copying the results that
# matter into RESULTS (at most 8 files: the machine hands back little, and may be taken back
# before the end, so a copy is refreshed every 20 s).
#
#   models/train/device_slot.sh RESULTS SHARD_DIR...      # e.g. $OUT /root/gpu/a .gpu/b
#
# RESULTS gets: student-best-ferplus.pt, student-best-fer2013.pt, student-last.pt,
# teacher-best-ferplus.pt, teacher-best-fer2013.pt, logs.tgz (both phases' train.log,
# log.jsonl, config.json) and slot.log. SLOT_TIMEOUT (default 480 s) bounds the training.
set -uo pipefail
[ $# -ge 2 ] || { echo "usage: $0 RESULTS SHARD_DIR..." >&2; exit 2; }
results="$1"
shift
here="$(cd "$(dirname "$0")" && pwd)"
work="${SLOT_WORK:-/tmp/emonet-slot}"
run="$work/run"
weights="$work/weights/backbone.pth"  # ImageNet weights of $BACKBONE (reproduce.sh checks them)
mkdir -p "$results" "$run/teacher"
log="$results/slot.log"
export PYTHONUNBUFFERED=1

# keep SRC DEST: copy SRC (if it exists yet) so that DEST is never half-written
keep() { [ -f "$1" ] && cp "$1" "$2.tmp" && mv "$2.tmp" "$2"; }

collect() {
    for f in best-ferplus best-fer2013 last; do keep "$run/$f.pt" "$results/student-$f.pt"; done
    for f in best-ferplus best-fer2013; do keep "$run/teacher/$f.pt" "$results/teacher-$f.pt"; done
    (cd "$run" && tar czf "$results/logs.tgz.tmp" $(ls train.log log.jsonl config.json \
        teacher/train.log teacher/log.jsonl teacher/config.json 2>/dev/null)) &&
        mv "$results/logs.tgz.tmp" "$results/logs.tgz"
    return 0
}

{
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv
    "${PYTHON:-python3}" "$here/gpu_pack.py" unpack --shards "$@" --data "$work/fer" \
        --weights "$weights" || exit 1
} 2>&1 | tee "$log" || exit 1

(while sleep 20; do collect; done) &
collector=$!
DATA="$work/fer" WEIGHTS="$weights" \
    timeout "${SLOT_TIMEOUT:-480}" "$here/gpu_run.sh" "$run" 2>&1 | tee -a "$log"
rc=$?
kill "$collector" 2>/dev/null
wait "$collector" 2>/dev/null
collect
echo "gpu_run.sh exit status $rc" | tee -a "$log"
ls -l "$results" | tee -a "$log"
exit "$rc"
