#!/bin/sh
# aarch64 proxy: guest instructions per inference of each ONNX model in tract, counted under
# qemu-user with insncount.c. -cpu cortex-a72 = Raspberry Pi 4 (NEON, no dot product: tract picks
# arm64simd_mmm_i32_8x8 for int8); cortex-a76 = Pi 5 (dot product: the ..._8x8_dot kernels).
# (runs=11 count − runs=1 count) / 10, so model loading is excluded. Each model is counted with
# tract's own operators (EMONET_TRACT_OPS=tract) and with emonet's (src/tract_ops, the default),
# from the same binary.
# An instruction count is a proxy for work, not a time: it ignores memory stalls, issue width and
# the cost differences between instructions. (x86 is measured directly: emonet bench.)
#   sh models/tools/aarch64/run_insn_counts.sh MODEL.onnx...
# Needs: gcc, gcc-aarch64-linux-gnu, libc6-dev-arm64-cross, qemu-user, rustup target
# aarch64-unknown-linux-gnu.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
. "$here/build_probe.sh"
count() { # ops cpu model runs
  EMONET_TRACT_OPS=$1 qemu-aarch64 -L /usr/aarch64-linux-gnu -cpu "$2" \
    -plugin "$out/libinsncount.so" -d plugin "$arm" "$3" "$4" 2>&1 | sed -n 's/^insns: //p'
}
per_inference() { # ops cpu model -> millions of instructions per inference
  c1=$(count "$1" "$2" "$3" 1); c11=$(count "$1" "$2" "$3" 11)
  echo "($c11 - $c1) / 10 / 1000000" | bc -l
}
printf '| model | operators | Cortex-A72 insns/inference | Cortex-A76 insns/inference |\n'
printf '|---|---|---:|---:|\n'
for m in "$@"; do
  for ops in tract emonet; do
    printf '| %s | %s | %.2f M | %.2f M |\n' "$(basename "$m")" "$ops" \
      "$(per_inference $ops cortex-a72 "$m")" "$(per_inference $ops cortex-a76 "$m")"
  done
done
