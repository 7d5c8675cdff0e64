# Sourced by run_insn_counts.sh and profile_insns.sh, with $here set to this folder: builds the
# counting plugins (insncount.c, insnprof.c) into $out and the tract probe for aarch64 ($arm).
out=${PERF_OUT:-/tmp/emonet-perf}
mkdir -p "$out"
for plugin in insncount insnprof; do
  gcc -shared -fPIC -O2 -o "$out/lib$plugin.so" "$here/$plugin.c"
done
export CARGO_TARGET_DIR="$out/probe-target"
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
(cd "$here/probe" && cargo build --release --target aarch64-unknown-linux-gnu -q)
arm="$CARGO_TARGET_DIR/aarch64-unknown-linux-gnu/release/tract-probe"
