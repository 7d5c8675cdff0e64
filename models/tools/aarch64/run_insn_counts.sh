#!/bin/sh
# aarch64 proxy: guest instructions per inference of each ONNX model in tract, counted under
# qemu-user with insncount.c. -cpu cortex-a72 = Raspberry Pi 4 (NEON, no dot product: tract picks
# arm64simd_mmm_i32_8x8 for int8); cortex-a76 = Pi 5 (dot product: the ..._8x8_dot kernels).
# (runs=11 count − runs=1 count) / 10, so model loading is excluded.
# An instruction count is a proxy for work, not a time: it ignores memory stalls, issue width and
# the cost differences between instructions. (x86 is measured directly: emonet bench.)
#   sh models/tools/aarch64/run_insn_counts.sh MODEL.onnx...
# Needs: gcc, gcc-aarch64-linux-gnu, libc6-dev-arm64-cross, qemu-user, rustup target
# aarch64-unknown-linux-gnu.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${PERF_OUT:-/tmp/emonet-perf}
mkdir -p "$out"
gcc -shared -fPIC -O2 -o "$out/libinsncount.so" "$here/insncount.c"
export CARGO_TARGET_DIR="$out/probe-target"
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
(cd "$here/probe" && cargo build --release --target aarch64-unknown-linux-gnu -q)
arm="$CARGO_TARGET_DIR/aarch64-unknown-linux-gnu/release/tract-probe"
count() { # cpu model runs
  qemu-aarch64 -L /usr/aarch64-linux-gnu -cpu "$1" -plugin "$out/libinsncount.so" -d plugin \
    "$arm" "$2" "$3" 2>&1 | sed -n 's/^insns: //p'
}
printf '| model | Cortex-A72 insns/inference | Cortex-A76 insns/inference |\n|---|---:|---:|\n'
for m in "$@"; do
  a1=$(count cortex-a72 "$m" 1); a11=$(count cortex-a72 "$m" 11)
  b1=$(count cortex-a76 "$m" 1); b11=$(count cortex-a76 "$m" 11)
  printf '| %s | %.1f M | %.1f M |\n' "$(basename "$m")" \
    "$(echo "($a11 - $a1) / 10 / 1000000" | bc -l)" "$(echo "($b11 - $b1) / 10 / 1000000" | bc -l)"
done
