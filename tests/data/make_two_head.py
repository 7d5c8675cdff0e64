#!/usr/bin/env python3
"""Writes tests/data/two-head-tiny.onnx: a tiny, hand-weighted classifier with the two-output
contract of the shipped emotion model (outputs `ferplus` then `fer2013`, 8 and 7 labels, the
same emonet.* metadata), so tests can check output selection in tract without the big file.

Network: input [1, 3, 8, 8] -> GlobalAveragePool -> Flatten -> one Gemm per output. With the
metadata's mean 0 / std 1 the pooled value is the crop's mean brightness b in [0, 1]:
  ferplus logits: happy = 8b - 4, sad = 4 - 8b, others -10  (bright -> happy, dark -> sad)
  fer2013 logits: surprise = 8b - 4, angry = 4 - 8b, others -10  (bright -> surprise, dark -> angry)
so a white crop is `happy` for one head and `surprise` for the other.

  python3 tests/data/make_two_head.py   (needs the `onnx` package; deterministic output)
"""
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

FERPLUS = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise", "contempt"]
FER2013 = FERPLUS[:7]


def head(labels, up, down):
    w = np.zeros((len(labels), 3), np.float32)
    b = np.full(len(labels), -10.0, np.float32)
    w[labels.index(up)] = 8.0 / 3  # the three channels carry the same gray value
    b[labels.index(up)] = -4.0
    w[labels.index(down)] = -8.0 / 3
    b[labels.index(down)] = 4.0
    return w, b


def main():
    nodes = [helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
             helper.make_node("Flatten", ["pooled"], ["features"], axis=1)]
    inits = []
    outs = []
    for name, labels, up, down in (("ferplus", FERPLUS, "happy", "sad"),
                                   ("fer2013", FER2013, "surprise", "angry")):
        w, b = head(labels, up, down)
        inits += [numpy_helper.from_array(w, f"{name}_w"), numpy_helper.from_array(b, f"{name}_b")]
        nodes.append(helper.make_node("Gemm", ["features", f"{name}_w", f"{name}_b"], [name], transB=1))
        outs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, len(labels)]))
    graph = helper.make_graph(nodes, "two-head-tiny",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 8, 8])],
                              outs, inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                          producer_name="emonet tests/data/make_two_head.py")
    m.ir_version = 8
    meta = {
        "emonet.labels": ",".join(FERPLUS), "emonet.outputs": "ferplus,fer2013",
        "emonet.labels.ferplus": ",".join(FERPLUS), "emonet.labels.fer2013": ",".join(FER2013),
        "emonet.input_height": "8", "emonet.input_width": "8", "emonet.channels": "3",
        "emonet.color": "gray", "emonet.mean": "0,0,0", "emonet.std": "1,1,1",
        "emonet.output": "logits", "emonet.face_margin": "0.1", "emonet.name": "two-head-tiny",
    }
    for k, v in meta.items():
        p = m.metadata_props.add()
        p.key, p.value = k, v
    onnx.checker.check_model(m)
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "two-head-tiny.onnx")
    onnx.save(m, out)
    print(f"wrote {out} ({os.path.getsize(out)} bytes)")


if __name__ == "__main__":
    main()
