"""Writes tests/fixtures/onnx/: two small ONNX models with a VGG16 topology (widths 4, 8, 8, 16, 16) built with the
`onnx` package, laid out as the two exporters users meet lay them out, and the same conv tensors as safetensors.

- keras_like.onnx: producer tf2onnx, NHWC input with a Transpose in front, weights as raw_data initializers, a
  Flatten/MatMul/Softmax classifier after the conv base (as tf2onnx writes a Keras VGG16 model).
- torch_like.onnx: producer pytorch, NCHW input, weights of odd layers as float_data, block5_conv3's as Constant
  nodes, a Flatten/Gemm classifier after.
- conv_base.safetensors: features.{0,2,…,28}.{weight,bias}, the tensors both models hold.

Needs: pip install onnx numpy safetensors. The tests only read the files.
"""
import os
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from safetensors.numpy import save_file

WIDTHS = [4, 8, 8, 16, 16]
CONVS_PER_BLOCK = [2, 2, 3, 3, 3]
INDEXES = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]


def conv_tensors(rng):
    tensors, cin = [], 3
    for width, n in zip(WIDTHS, CONVS_PER_BLOCK):
        for _ in range(n):
            w = (rng.standard_normal((width, cin, 3, 3)) * np.sqrt(2.0 / (9 * cin))).astype(np.float32)
            b = (rng.standard_normal(width) * 0.1).astype(np.float32)
            tensors.append((w, b))
            cin = width
    return tensors


def float_data_tensor(name, array):
    t = TensorProto()
    t.name = name
    t.data_type = TensorProto.FLOAT
    t.dims.extend(array.shape)
    t.float_data.extend(array.flatten().tolist())
    return t


def build(tensors, style):
    nodes, inits = [], []
    x = "input"
    if style == "keras":
        nodes.append(helper.make_node("Transpose", ["input"], ["nchw"], perm=[0, 3, 1, 2], name="Transpose__6"))
        x = "nchw"
    k = 0
    for block, n in enumerate(CONVS_PER_BLOCK, start=1):
        for c in range(1, n + 1):
            w, b = tensors[k]
            wn, bn = f"block{block}_conv{c}/kernel:0", f"block{block}_conv{c}/bias:0"
            if style == "torch" and k == 12:
                nodes.append(helper.make_node("Constant", [], [wn], value=numpy_helper.from_array(w)))
                nodes.append(helper.make_node("Constant", [], [bn], value=numpy_helper.from_array(b)))
            elif style == "torch" and k % 2 == 1:
                inits += [float_data_tensor(wn, w), float_data_tensor(bn, b)]
            else:
                inits += [numpy_helper.from_array(w, wn), numpy_helper.from_array(b, bn)]
            out = f"block{block}_conv{c}/out"
            nodes.append(helper.make_node("Conv", [x, wn, bn], [out], kernel_shape=[3, 3], pads=[1, 1, 1, 1]))
            nodes.append(helper.make_node("Relu", [out], [out + "/relu"]))
            x = out + "/relu"
            k += 1
        nodes.append(helper.make_node("MaxPool", [x], [f"block{block}_pool"], kernel_shape=[2, 2], strides=[2, 2]))
        x = f"block{block}_pool"
    nodes.append(helper.make_node("Flatten", [x], ["flat"]))
    dense = np.full((16, 2), 0.01, np.float32)
    inits.append(numpy_helper.from_array(dense, "dense/kernel:0"))
    if style == "keras":
        nodes.append(helper.make_node("MatMul", ["flat", "dense/kernel:0"], ["logits"]))
        nodes.append(helper.make_node("Softmax", ["logits"], ["output"]))
        shape = [None, 32, 32, 3]
    else:
        inits.append(numpy_helper.from_array(np.zeros(2, np.float32), "dense/bias:0"))
        nodes.append(helper.make_node("Gemm", ["flat", "dense/kernel:0", "dense/bias:0"], ["output"]))
        shape = [None, 3, 32, 32]
    graph = helper.make_graph(
        nodes,
        f"vgg16_{style}",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [None, 2])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.producer_name = "tf2onnx" if style == "keras" else "pytorch"
    onnx.checker.check_model(model)
    return model


def main():
    out = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "onnx"
    os.makedirs(out, exist_ok=True)
    tensors = conv_tensors(np.random.default_rng(0))
    onnx.save(build(tensors, "keras"), out / "keras_like.onnx")
    onnx.save(build(tensors, "torch"), out / "torch_like.onnx")
    named = {}
    for i, (w, b) in zip(INDEXES, tensors):
        named[f"features.{i}.weight"], named[f"features.{i}.bias"] = w, b
    save_file(named, out / "conv_base.safetensors")
    print("onnx", onnx.__version__, "->", out)


if __name__ == "__main__":
    main()
