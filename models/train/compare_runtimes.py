#!/usr/bin/env python3
"""Side by side: the same ONNX files and the same input tensors through onnxruntime (here) and
tract (through `emonet bench --raw-model ... --json`), one thread each, reported as ratios.

Inputs are identical in both runtimes: every element i of the model's input tensor is
`((i * 7919) % 256) / 127.5 - 1` (float32, the model's fixed input shape). Latency of these
convolutional models does not depend on the values; using the same formula means the outputs
can be compared too (max |tract - ort| is printed).

    python3 models/train/compare_runtimes.py                      # default models, 200 runs
    python3 models/train/compare_runtimes.py --runs 500 --json out.json
    python3 models/train/compare_runtimes.py --emonet target/release/emonet \
        models/blazeface-short.onnx models/emotion-mnv2-fp32.onnx models/emotion-mnv2-w8.onnx models/emotion-mnv2-int8.onnx

Prints a markdown table: model, onnxruntime p50, tract p50, tract/ort.

`--ort-ops` also prints onnxruntime's own per-operator profile (`enable_profiling`): the median
per run of the summed kernel times of the depthwise convolutions (a `Conv` whose weights are
`[C, 1, kh, kw]`, as onnxruntime reports its possibly fused node's inputs), the max-pools, the
other convolutions and everything else. tract's side: `cargo run --release --example op_profile
-- MODEL`. `EMONET_TRACT_OPS=tract` in the environment times tract's own operators instead of
emonet's (`src/tract_ops`).
"""
import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np
import onnx
import onnxruntime as ort

import onnx_io

DEFAULT_MODELS = [
    "models/blazeface-short.onnx",
    "models/emotion-mnv2-fp32.onnx",
    "models/emotion-mnv2-w8.onnx",
    "models/emotion-mnv2-int8.onnx",
]


def input_tensor(shape):
    n = int(np.prod(shape))
    i = np.arange(n, dtype=np.int64)
    return (((i * 7919) % 256).astype(np.float32) / np.float32(127.5) - np.float32(1.0)).reshape(shape)


def input_shape(path):
    m = onnx.load(path, load_external_data=False)
    dims = m.graph.input[0].type.tensor_type.shape.dim
    shape = [d.dim_value if d.dim_value > 0 else 1 for d in dims]
    return shape


def time_ort(path, runs, warmup, threads):
    sess = onnx_io.session(path, threads)
    name = sess.get_inputs()[0].name
    x = input_tensor(input_shape(path))
    for _ in range(warmup):
        out = sess.run(None, {name: x})
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter()
        out = sess.run(None, {name: x})
        ts.append((time.perf_counter() - t0) * 1000.0)
    ts.sort()
    return {
        "p50_ms": statistics.median(ts),
        # nearest rank, as `emonet bench` and the daemon's stats compute it
        "p99_ms": ts[max(math.ceil(0.99 * len(ts)), 1) - 1],
        "min_ms": ts[0],
        "outputs": [o.astype(np.float32).ravel() for o in out],
    }


def ort_op_profile(path, runs, threads):
    """Median per run of onnxruntime's kernel time (µs) per operator category."""
    import tempfile
    sess = onnx_io.session(path, threads, os.path.join(tempfile.mkdtemp(), "ort"))
    name = sess.get_inputs()[0].name
    x = input_tensor(input_shape(path))
    for _ in range(runs + runs // 10):
        sess.run(None, {name: x})
    events = json.load(open(sess.end_profiling()))
    run_spans = sorted((e["ts"], e["ts"] + e["dur"]) for e in events
                       if e.get("cat") == "Session" and e.get("name") == "model_run")
    run_spans = run_spans[runs // 10:]
    per_run = [dict() for _ in run_spans]

    def category(e):
        op = e.get("args", {}).get("op_name", "")
        shapes = [next(iter(t.values())) for t in e.get("args", {}).get("input_type_shape", [])]
        # depthwise: weights [C, 1, kh, kw] with C > 1 (fused or NCHWc-reordered nodes included)
        if "Conv" in op and len(shapes) > 1 and len(shapes[1]) == 4 and shapes[1][1] == 1 \
                and shapes[1][0] > 1 and shapes[1][2] * shapes[1][3] > 1:
            return "depthwise conv"
        if "MaxPool" in op:
            return "max-pool"
        if "Conv" in op:
            return "other conv"
        return "other: " + op

    for e in events:
        if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time"):
            continue
        for i, (a, b) in enumerate(run_spans):
            if a <= e["ts"] <= b:
                c = category(e)
                per_run[i][c] = per_run[i].get(c, 0) + e["dur"]
                break
    cats = sorted({c for r in per_run for c in r})
    return {c: statistics.median(r.get(c, 0) for r in per_run) for c in cats}


def time_tract(emonet, models, runs, frames):
    cmd = [emonet, "bench", "--frames", frames, "--frames-count", "1", "--warmup", "0",
           "--camera-fps", "0", "--json",
           "--raw-runs", str(runs)]
    for m in models:
        cmd += ["--raw-model", m]
    res = subprocess.run(cmd, check=True, capture_output=True, text=True)
    doc = json.loads(res.stdout)
    return {r["path"]: r for r in doc["raw_models"]}, doc


def tract_version(lock="Cargo.lock"):
    try:
        text = open(lock).read()
    except OSError:
        return "?"
    for block in text.split("[[package]]"):
        if 'name = "tract-onnx"' in block:
            return block.split('version = "')[1].split('"')[0]
    return "?"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="*", default=DEFAULT_MODELS)
    ap.add_argument("--emonet", default="target/release/emonet")
    ap.add_argument("--frames", default="samples/frames")
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--ort-ops", action="store_true",
                    help="also print onnxruntime's per-operator profile (median µs per run)")
    args = ap.parse_args()

    tract, doc = time_tract(args.emonet, args.models, args.runs, args.frames)
    rows = []
    for m in args.models:
        o = time_ort(m, args.runs, args.warmup, args.threads)
        t = tract[m]
        diff = None
        if "outputs" in t:
            diffs = [float(np.max(np.abs(np.asarray(a, np.float32).ravel() - b)))
                     for a, b in zip(t["outputs"], o["outputs"])]
            diff = max(diffs) if diffs else None
        rows.append({
            "model": os.path.basename(m),
            "ort_p50_ms": o["p50_ms"], "ort_p99_ms": o["p99_ms"],
            "tract_p50_ms": t["p50_ms"], "tract_p99_ms": t["p99_ms"],
            "ratio_tract_over_ort": t["p50_ms"] / o["p50_ms"],
            "max_abs_diff": diff,
        })

    env = {
        "machine": platform.processor() or platform.machine(),
        "cpu": doc.get("machine", {}).get("cpu", ""),
        "onnxruntime": ort.__version__,
        "tract": tract_version(),
        "threads": args.threads,
        "runs": args.runs,
        "loadavg_1m_at_tract_start": doc.get("machine", {}).get("loadavg_1m"),
    }
    print(f"# {env['cpu']} · onnxruntime {env['onnxruntime']} · tract {env['tract']} · "
          f"{args.threads} thread(s) · {args.runs} runs · p50 · load average "
          f"{env['loadavg_1m_at_tract_start']} when tract started")
    print()
    print("| model | onnxruntime p50 ms | tract p50 ms | tract / ort | max abs diff |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        d = "-" if r["max_abs_diff"] is None else f"{r['max_abs_diff']:.2e}"
        print(f"| {r['model']} | {r['ort_p50_ms']:.3f} | {r['tract_p50_ms']:.3f} | "
              f"{r['ratio_tract_over_ort']:.2f}x | {d} |")
    if args.ort_ops:
        print()
        print("| model | onnxruntime operator category | µs per run (median) |")
        print("|---|---|---:|")
        for m in args.models:
            for cat, us in ort_op_profile(m, args.runs, args.threads).items():
                print(f"| {os.path.basename(m)} | {cat} | {us:.1f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"env": env, "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
