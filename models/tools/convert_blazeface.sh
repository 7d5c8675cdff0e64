#!/usr/bin/env bash
# Reproduces models/blazeface-short.onnx and models/blazeface-full.onnx: MediaPipe BlazeFace
# short range and full range, TFLite -> ONNX.
#
# Source: npm @mediapipe/face_detection@0.4.1657300184 (Apache-2.0), files
#         package/face_detection_short_range.tflite (229 KB) and
#         package/face_detection_full_range.tflite (1.08 MB).
# Models: short: input "input" float32 [1, 128, 128, 3] NHWC, RGB pixels scaled to [-1, 1];
#         outputs [1, 896, 16] regressors (box cx, cy, w, h + 6 key points x, y, in input
#         pixels relative to the anchor) and [1, 896, 1] classificator logits.
#         full: input [1, 192, 192, 3], outputs [1, 2304, 16] and [1, 2304, 1] (one anchor per
#         cell of a 48x48 grid), same encoding.
#         Decoding (anchors, sigmoid, NMS) is in src/vision/detect.rs.
#
# Usage:  models/tools/convert_blazeface.sh [short|full] [VENV_DIR]   (from the repository root)
#         tf2onnx numbers its generated constants nondeterministically, so a re-run is not
#         byte-identical; the check at the end compares the ONNX outputs with TFLite's instead.
# Needs:  python3 (3.9-3.11), npm, network access to npm and PyPI. The converter runs in its own
#         virtualenv (default /tmp/emonet-tfvenv) so the system python is not touched.
set -euo pipefail

RANGE=${1:-short}
VENV=${2:-/tmp/emonet-tfvenv}
PKG=@mediapipe/face_detection@0.4.1657300184
case "$RANGE" in
    short|full) ;;
    *) echo "usage: $0 [short|full] [VENV_DIR]" >&2; exit 2 ;;
esac
OUT=models/blazeface-$RANGE.onnx
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

[ -f Cargo.toml ] && [ -d models ] || { echo "run from the repository root" >&2; exit 1; }

if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet tensorflow-cpu==2.15.1 tf2onnx==1.16.1 onnxruntime
fi

(cd "$WORK" && npm pack --silent "$PKG" >/dev/null && tar xzf mediapipe-face_detection-*.tgz)
TFLITE="$WORK/package/face_detection_${RANGE}_range.tflite"
sha256sum "$TFLITE"

"$VENV/bin/python" -m tf2onnx.convert --tflite "$TFLITE" --output "$OUT" --opset 13

# Record provenance in the ONNX metadata and check the converted model against TFLite.
"$VENV/bin/python" - "$TFLITE" "$OUT" "$RANGE" <<'PY'
import sys
import numpy as np
import onnx
import onnxruntime as ort
import tensorflow as tf

tflite_path, onnx_path, rng = sys.argv[1], sys.argv[2], sys.argv[3]
side = {"short": 128, "full": 192}[rng]
m = onnx.load(onnx_path)
props = {
    "emonet.name": f"blazeface-{rng}-range",
    "emonet.source": f"npm @mediapipe/face_detection@0.4.1657300184 face_detection_{rng}_range.tflite",
    "emonet.license": "Apache-2.0",
}
del m.metadata_props[:]
for k, v in props.items():
    e = m.metadata_props.add()
    e.key, e.value = k, v
onnx.save(m, onnx_path)

x = np.random.default_rng(0).uniform(-1, 1, (1, side, side, 3)).astype(np.float32)
it = tf.lite.Interpreter(model_path=tflite_path)
it.allocate_tensors()
it.set_tensor(it.get_input_details()[0]["index"], x)
it.invoke()
ref = {tuple(d["shape"]): it.get_tensor(d["index"]) for d in it.get_output_details()}
sess = ort.InferenceSession(onnx_path)
got = sess.run(None, {sess.get_inputs()[0].name: x})
for g in got:
    r = ref[tuple(g.shape)]
    err = float(np.abs(g - r).max())
    print(f"output {g.shape}: max |onnx - tflite| = {err:.2e}")
    assert err < 1e-3, err
print("inputs:", [(i.name, i.shape) for i in sess.get_inputs()])
print("outputs:", [(o.name, o.shape) for o in sess.get_outputs()])
PY
sha256sum "$OUT"
