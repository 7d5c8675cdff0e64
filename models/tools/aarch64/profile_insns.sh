#!/bin/sh
# Where the aarch64 instructions of one inference go: a per-function (and per kind of work)
# profile of each ONNX model in tract under qemu-user, with tract's own operators and with
# emonet's (src/tract_ops). Same probe binary and same (11 runs − 1 run) / 10 method as
# run_insn_counts.sh, with insnprof.c counting per translated block instead of in total.
#   sh models/tools/aarch64/profile_insns.sh MODEL.onnx... [CPU=cortex-a72]
# Needs what run_insn_counts.sh needs.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
cpu=${CPU:-cortex-a72}
. "$here/build_probe.sh"
run() { # ops model runs dump -> prints the probe's load address
  EMONET_TRACT_OPS=$1 PROBE_BASE=1 qemu-aarch64 -L /usr/aarch64-linux-gnu -cpu "$cpu" \
    -plugin "$out/libinsnprof.so,out=$4" -d plugin "$arm" "$2" "$3" | sed -n 's/^probe_main //p'
}
for m in "$@"; do
  for ops in tract emonet; do
    echo "## $(basename "$m"), $ops operators, $cpu"
    addr=$(run "$ops" "$m" 1 "$out/prof-1.txt")
    run "$ops" "$m" 11 "$out/prof-11.txt" >/dev/null
    python3 "$here/profile_insns.py" "$arm" "$addr" 1 "$out/prof-1.txt" 11 "$out/prof-11.txt"
    echo
  done
done
