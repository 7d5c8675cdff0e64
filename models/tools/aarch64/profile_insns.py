#!/usr/bin/env python3
"""Per-function aarch64 instruction profile of one inference, from two insnprof.c dumps.

    profile_insns.py BINARY LOAD_ADDR RUNS_A DUMP_A RUNS_B DUMP_B [--top N]

Each dump holds "guest_address count" per translated block for a run of the probe with RUNS_A
(RUNS_B) inferences; per inference = (B − A) / (RUNS_B − RUNS_A), so loading cancels out.
LOAD_ADDR is where the probe's `tract_probe::main` was at run time (the probe prints it with
PROBE_BASE=1). Blocks are attributed to the symbol that contains them (`nm`): code inlined into a
function counts as that function's. Prints the totals by kind of work and the top functions.
"""
import argparse
import bisect
import collections
import re
import subprocess

# (kind, pattern on the demangled symbol), first match wins
KINDS = [
    ("depthwise, emonet", r"tract_ops::kernels::(depthwise|dw_|PhasePlan|neon::)"),
    ("pointwise, emonet", r"tract_ops::kernels::(pointwise|neon_pointwise::)|FastPointwise"),
    ("dense conv (im2col), emonet", r"tract_ops::kernels::(conv_im2col|im2col|stem_row|tap_row)|FastConv"),
    ("max-pool, emonet", r"tract_ops::kernels::maxpool"),
    ("depthwise, tract", r"depthwise|DepthWise|depth_wise|ZoneScanner|process_zone"),
    ("max-pool, tract", r"MaxPool|max_pool|maxpool"),
    ("matmul kernel inner loops (asm)", r"^\.packed_packed_loop"),
    ("matmul kernel entry, fused ops, stores (asm)", r"^\.|_mmm_"),
    ("matmul driver, packing, im2col (Rust)", r"mmm|frame::pack|MMMInput|im2col|Im2col|PackedFormat"),
    ("libc (memcpy, memset, malloc)", r"^<libc>$"),
]
OTHER = "other (plan, element-wise, glue)"


def symbols(binary):
    out = subprocess.run(["aarch64-linux-gnu-nm", "-C", "-n", "--defined-only", binary],
                         capture_output=True, text=True, check=True).stdout
    syms = []
    for line in out.splitlines():
        parts = line.split(" ", 2)
        if len(parts) == 3 and parts[1] in "tTwW":
            syms.append((int(parts[0], 16), parts[2]))
    return syms


def load(path, base, starts, names, text_end):
    counts = collections.Counter()
    for line in open(path):
        addr, n = line.split()
        off = int(addr, 16) - base
        if 0 <= off < text_end:
            i = bisect.bisect_right(starts, off) - 1
            counts[names[i] if i >= 0 else "?"] += int(n)
        else:
            counts["<libc>"] += int(n)  # shared libraries: the loader and glibc
    return counts


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("binary")
    ap.add_argument("load_addr")
    ap.add_argument("runs_a", type=int)
    ap.add_argument("dump_a")
    ap.add_argument("runs_b", type=int)
    ap.add_argument("dump_b")
    ap.add_argument("--top", type=int, default=12)
    a = ap.parse_args()
    syms = symbols(a.binary)
    main_off = next(addr for addr, name in syms if name == "tract_probe::main")
    base = int(a.load_addr, 16) - main_off
    starts, names = [s for s, _ in syms], [n for _, n in syms]
    text_end = syms[-1][0] + 0x10000
    ca = load(a.dump_a, base, starts, names, text_end)
    cb = load(a.dump_b, base, starts, names, text_end)
    per = {k: (cb[k] - ca.get(k, 0)) / (a.runs_b - a.runs_a) for k in cb}
    total = sum(per.values())
    kinds = collections.Counter()
    for name, v in per.items():
        kind = next((k for k, pat in KINDS if re.search(pat, name)), OTHER)
        kinds[kind] += v
    print(f"total: {total / 1e6:.2f} M instructions per inference")
    print("| kind of work | M insns | share |\n|---|---:|---:|")
    for k, v in sorted(kinds.items(), key=lambda kv: -kv[1]):
        print(f"| {k} | {v / 1e6:.2f} | {100 * v / total:.1f} % |")
    print(f"\ntop {a.top} functions:")
    for name, v in sorted(per.items(), key=lambda kv: -kv[1])[: a.top]:
        print(f"  {v / 1e6:6.3f} M {100 * v / total:5.1f} %  {name[:110]}")


if __name__ == "__main__":
    main()
