"""What the export, check and probe scripts share around ONNX files: the Rust side's classifier
pre-processing, one way to open an onnxruntime session, running a model over a batch image by
image, calibration data for static quantization, and the per-class val report."""
import time

import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import CalibrationDataReader
from PIL import Image

import ferdata


def preprocess(images_u8, size):
    """uint8 [B,H,W] grey -> float32 [B,3,S,S] the way the Rust side does it: Pillow-style bilinear
    resize in floating point (src/vision/classify.rs: fast_image_resize's equivalent on f32
    pixels), then (p/255 - mean)/std with the grey value replicated to 3 channels. For FER's 48-px
    faces this is train.py's float resize (to 1e-6)."""
    if images_u8.shape[1:] != (size, size):
        images = np.stack([np.asarray(Image.fromarray(im.astype(np.float32)).resize(
            (size, size), Image.BILINEAR)) for im in images_u8])
    else:
        images = images_u8.astype(np.float32)
    x = images[:, None] / np.float32(255.0)
    mean = np.array(ferdata.MEAN, np.float32)[None, :, None, None]
    std = np.array(ferdata.STD, np.float32)[None, :, None, None]
    return ((np.repeat(x, 3, axis=1) - mean) / std).astype(np.float32)


def session(path, threads=1, profile_prefix=None):
    """An onnxruntime CPU session on `threads` threads, sequential, full graph optimization, no
    thread spinning (spinning would burn the second core and distort a 1-thread timing). With
    `profile_prefix`, onnxruntime's per-operator profiling is on (`end_profiling()` names the
    JSON trace it wrote there)."""
    so = ort.SessionOptions()
    if profile_prefix:
        so.enable_profiling = True
        so.profile_file_prefix = profile_prefix
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def run(path, x, threads=1):
    """{output name: [N, K] array} for the images of `x` (one at a time, as the daemon runs
    them) and the mean milliseconds per image."""
    s = session(path, threads)
    name = s.get_inputs()[0].name
    names = [o.name for o in s.get_outputs()]
    outs = {k: [] for k in names}
    t = time.time()
    for i in range(len(x)):
        for k, y in zip(names, s.run(None, {name: x[i:i + 1]})):
            outs[k].append(y[0])
    ms = (time.time() - t) / max(len(x), 1) * 1000
    return {k: np.stack(v).astype(np.float32) for k, v in outs.items()}, ms


class Calib(CalibrationDataReader):
    """Static-quantization calibration data: the rows of `x`, one at a time, as `input_name`."""

    def __init__(self, x, input_name="input"):
        self.x, self.name, self.i = x, input_name, 0

    def get_next(self):
        if self.i >= len(self.x):
            return None
        self.i += 1
        return {self.name: self.x[self.i - 1:self.i]}

    def rewind(self):
        self.i = 0


def report(outputs, va):
    """Per-class reports on a val split. outputs: {name: logits}. Two-head files:
    ferdata.head_reports; a single-output (v1) file: its 8 classes on FER+ majority, best of 7 on
    FER2013."""
    if "ferplus" in outputs:
        return ferdata.head_reports(outputs, va)
    logits = next(iter(outputs.values()))
    m = va["fer2013"] >= 0
    r13 = ferdata.per_class_report(logits[m, :7].argmax(1), va["fer2013"][m], ferdata.FER2013_LABELS)
    m = va["ferplus"] >= 0
    rfp = ferdata.per_class_report(logits[m].argmax(1), va["ferplus"][m], ferdata.LABELS)
    return {"fer2013_val": r13, "ferplus_val": rfp}
