#!/usr/bin/env bash
# Face-detection benchmark: builds the frames (make_frames.py), runs emonet's detector on them
# (examples/detect_frames.rs: the daemon's FaceDetector in tract, release build, one thread) for
# each candidate, and prints the tables of score.py.
#
# Usage:  models/tools/detection_bench/run.sh [OUT_DIR]      (from the repository root)
#         PYTHON=path/to/python (with numpy and Pillow; default python3)
# Candidates: short range (the 128×128 model on the whole frame), full range (192×192), each
# of them on the whole frame plus six 256×256 tiles (--tiles), far (CenterFace, 384×288), and
# far's faces followed by the short-range model (--follow, the daemon's [detector.follow]).
set -euo pipefail
OUT=${1:-target/detection_bench}
PY=${PYTHON:-python3}
[ -f Cargo.toml ] && [ -d models ] || { echo "run from the repository root" >&2; exit 1; }
HERE=models/tools/detection_bench

[ -f "$OUT/truth.json" ] || "$PY" "$HERE/make_frames.py" "$OUT"
cargo build --release --example detect_frames
BIN=target/release/examples/detect_frames
mapfile -t FRAMES < <(find "$OUT/frames" -name '*.png' | sort)

run() {  # NAME ARGS…
    local name=$1; shift
    echo "running $name on ${#FRAMES[@]} frames" >&2
    "$BIN" "$@" "${FRAMES[@]}" > "$OUT/$name.jsonl"
}
# One run per candidate at a low threshold; score.py applies the thresholds compared.
run short --range short --score-threshold 0.3
run full --range full --score-threshold 0.3
run short-tiles --range short --tiles --score-threshold 0.3
run full-tiles --range full --tiles --score-threshold 0.3
run far --range far --score-threshold 0.3
# The faces far finds (at its default threshold, 0.5), followed on the next frame as the daemon
# does between full detections with [detector.follow] (a face standing still), kept from the
# follower's default threshold, 0.4.
run far-follow --range far --follow --score-threshold 0.5

"$PY" "$HERE/score.py" "$OUT/truth.json" \
    "short 0.6=$OUT/short.jsonl@0.6" "short 0.5=$OUT/short.jsonl@0.5" \
    "full 0.6=$OUT/full.jsonl@0.6" "full 0.5=$OUT/full.jsonl@0.5" \
    "short+tiles 0.6=$OUT/short-tiles.jsonl@0.6" \
    "full+tiles 0.6=$OUT/full-tiles.jsonl@0.6" "full+tiles 0.5=$OUT/full-tiles.jsonl@0.5" \
    "far 0.5=$OUT/far.jsonl@0.5" "far 0.6=$OUT/far.jsonl@0.6" \
    "far+follow 0.5/0.4=$OUT/far-follow.jsonl@0.4"
