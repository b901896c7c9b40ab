"""FP32 files of the kinds that made verify's verdicts wrong (issue 19), small and seeded, written
as their exporters write them: never through ``qx export``, so they are NOT canonicalized and
``qx quantize`` has something to canonicalize that verify must replay.

- ``savedmodel_transformer``: a Keras transformer block saved as a SavedModel and converted by
  tf2onnx from its serving signature (Reshape/Gather/Shape/Cast chains of Tensordot, dynamic batch).
- ``legacy_transformer``: torch's TorchScript-based exporter with constant folding off, dynamic
  batch: Shape/Gather/Unsqueeze/Concat/Cast chains feeding Reshape, weights as initializers.
- ``constant_batchnorm``: paddle2onnx style, opset 11: every weight a ``Constant`` node, and
  BatchNormalization after each convolution (which quantize folds).
- ``detection_head``: a YOLO-style head that concatenates boxes (up to ~320) and sigmoid scores
  (0..1) along the channel axis: one shared int8 scale zeroes the scores.
- ``dlrm_legacy`` / ``dlrm_dynamo``: ``mlperf_shapes.dlrm_like`` (EmbeddingBag tables inside Loop
  bodies, a bmm dot interaction, advanced indexing) through torch's legacy exporter (48 Constant
  nodes, Shape chains) and its dynamo one (Identity nodes, a SequenceEmpty feeding each Loop).
- ``shape_ops_qdq``: Conv outputs that go through Reshape/Transpose/Flatten (int8 pass-through
  ops that carry Q/DQ) and a Shape read of a quantized tensor, before a MatMul.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def legacy_transformer(path: Path) -> Path:
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self, width=16, heads=2, classes=5):
            super().__init__()
            self.embed, self.qkv, self.proj = nn.Linear(8, width), nn.Linear(width, 3 * width), nn.Linear(width, width)
            self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
            self.ff1, self.ff2, self.head = nn.Linear(width, 2 * width), nn.Linear(2 * width, width), nn.Linear(width, classes)
            self.heads = heads

        def forward(self, x):
            h = self.embed(x)
            batch, length, width = h.shape  # legacy export: Shape -> Gather -> Unsqueeze -> Concat chains
            q, k, v = self.qkv(self.norm1(h)).chunk(3, dim=-1)
            split = lambda t: t.reshape(batch, length, self.heads, width // self.heads).transpose(1, 2)  # noqa: E731
            q, k, v = split(q), split(k), split(v)
            scores = q @ k.transpose(-1, -2) * (width // self.heads) ** -0.5
            attended = (scores.softmax(-1) @ v).transpose(1, 2).reshape(batch, length, width)
            h = h + self.proj(attended)
            h = h + self.ff2(torch.nn.functional.gelu(self.ff1(self.norm2(h))))
            return self.head(h.mean(dim=1))

    torch.manual_seed(0)
    module = Block().eval()
    torch.onnx.export(module, (torch.randn(1, 6, 8),), str(path), dynamo=False, input_names=["x"],
                      output_names=["logits"], opset_version=17, do_constant_folding=False,
                      dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}})
    return path


def _dlrm(path: Path, dynamo: bool) -> Path:
    import torch
    from mlperf_shapes import BAG, DENSE, ROWS, TABLES, dlrm_like

    example = (torch.randn(2, DENSE, generator=torch.Generator().manual_seed(0)),
               torch.randint(0, ROWS, (2, TABLES, BAG), generator=torch.Generator().manual_seed(0)))
    names = {"input_names": ["dense", "sparse"], "output_names": ["score"]}
    if dynamo:
        batch = torch.export.Dim("batch")
        torch.onnx.export(dlrm_like(), example, str(path), dynamo=True, opset_version=18,
                          dynamic_shapes={"dense": {0: batch}, "sparse": {0: batch}}, **names)
    else:
        torch.onnx.export(dlrm_like(), example, str(path), dynamo=False, opset_version=17,
                          dynamic_axes={"dense": {0: "batch"}, "sparse": {0: "batch"}, "score": {0: "batch"}}, **names)
    return path


def dlrm_legacy(path: Path) -> Path:
    return _dlrm(path, dynamo=False)


def dlrm_dynamo(path: Path) -> Path:
    return _dlrm(path, dynamo=True)


def savedmodel_transformer(path: Path) -> Path:
    import keras
    import tensorflow as tf
    import tf2onnx

    keras.utils.set_random_seed(0)
    tokens = keras.Input((6, 8), name="x")
    h = keras.layers.Dense(16)(tokens)
    h = keras.layers.LayerNormalization()(h + keras.layers.MultiHeadAttention(num_heads=2, key_dim=8)(h, h))
    h = keras.layers.LayerNormalization()(h + keras.layers.Dense(16)(keras.layers.Dense(32, activation="relu")(h)))
    model = keras.Model(tokens, keras.layers.Dense(5)(keras.layers.GlobalAveragePooling1D()(h)))
    saved = path.parent / "saved_model"
    tf.saved_model.save(model, str(saved))
    loaded = tf.saved_model.load(str(saved))  # kept referenced: the signature reads its variables
    serving = loaded.signatures["serving_default"]
    signature = [tf.TensorSpec([None, 6, 8], tf.float32, name="x")]

    @tf.function(input_signature=signature)
    def call(x):
        return serving(x)

    proto, _ = tf2onnx.convert.from_function(call, input_signature=signature, opset=17)
    onnx.save(proto, str(path))
    return path


def _constant(name: str, array: np.ndarray) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(array.astype(np.float32), name))


def _conv_bn(nodes: list, x: str, cin: int, cout: int, prefix: str, rng) -> str:
    nodes += [_constant(f"{prefix}.w", rng.normal(0, 0.3, (cout, cin, 3, 3))),
              _constant(f"{prefix}.b", rng.normal(0, 0.1, cout)),
              _constant(f"{prefix}.gamma", rng.uniform(0.5, 1.5, cout)), _constant(f"{prefix}.beta", rng.normal(0, 0.2, cout)),
              _constant(f"{prefix}.mean", rng.normal(0, 0.2, cout)), _constant(f"{prefix}.var", rng.uniform(0.5, 2.0, cout)),
              helper.make_node("Conv", [x, f"{prefix}.w", f"{prefix}.b"], [f"{prefix}.conv"], pads=[1, 1, 1, 1]),
              helper.make_node("BatchNormalization", [f"{prefix}.conv", f"{prefix}.gamma", f"{prefix}.beta",
                                                      f"{prefix}.mean", f"{prefix}.var"], [f"{prefix}.bn"], epsilon=1e-5),
              helper.make_node("Relu", [f"{prefix}.bn"], [f"{prefix}.relu"])]
    return f"{prefix}.relu"


def constant_batchnorm(path: Path) -> Path:
    rng, nodes = _rng(1), []
    h = _conv_bn(nodes, "x", 3, 8, "block1", rng)
    h = _conv_bn(nodes, h, 8, 8, "block2", rng)
    nodes += [helper.make_node("GlobalAveragePool", [h], ["pooled"]),
              helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
              _constant("fc.w", rng.normal(0, 0.5, (8, 4))), _constant("fc.b", rng.normal(0, 0.1, 4)),
              helper.make_node("Gemm", ["flat", "fc.w", "fc.b"], ["logits"])]
    graph = helper.make_graph(nodes, "paddle_like", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 12, 12])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 4])])
    return _save(graph, path, opset=11)


def detection_head(path: Path) -> Path:
    """(1, 4 + classes, anchors): boxes in pixels of a 320 image, then class probabilities."""
    rng, classes = _rng(2), 6
    inits = [numpy_helper.from_array(a.astype(np.float32), n) for n, a in (
        ("stem.w", rng.normal(0, 0.3, (8, 3, 3, 3))), ("stem.b", rng.normal(0, 0.1, 8)),
        ("box.w", rng.normal(0, 0.3, (4, 8, 1, 1))), ("box.b", rng.normal(0, 0.1, 4)),
        ("cls.w", rng.normal(0, 0.3, (classes, 8, 1, 1))), ("cls.b", rng.normal(-1.0, 0.3, classes)),
        ("box_scale", np.array(80.0)), ("box_offset", np.array(160.0)))]
    inits.append(numpy_helper.from_array(np.array([0, 4 + classes, -1], np.int64), "flat_shape"))
    nodes = [helper.make_node("Conv", ["image", "stem.w", "stem.b"], ["stem"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["stem"], ["features"]),
             helper.make_node("Conv", ["features", "box.w", "box.b"], ["box_raw"]),
             helper.make_node("Mul", ["box_raw", "box_scale"], ["box_scaled"]),
             helper.make_node("Add", ["box_scaled", "box_offset"], ["boxes"]),
             helper.make_node("Conv", ["features", "cls.w", "cls.b"], ["cls_raw"]),
             helper.make_node("Sigmoid", ["cls_raw"], ["scores"]),
             helper.make_node("Concat", ["boxes", "scores"], ["head"], axis=1),
             helper.make_node("Reshape", ["head", "flat_shape"], ["detections"])]
    graph = helper.make_graph(nodes, "detection_head", [helper.make_tensor_value_info("image", TensorProto.FLOAT,
                                                                                      [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("detections", TensorProto.FLOAT, [1, 4 + classes, 64])],
                              inits)
    return _save(graph, path, opset=17)


def shape_ops_qdq(path: Path) -> Path:
    rng = _rng(3)
    inits = [numpy_helper.from_array(a.astype(np.float32), n) for n, a in (
        ("conv.w", rng.normal(0, 0.3, (8, 4, 3, 3))), ("conv.b", rng.normal(0, 0.1, 8)),
        ("mm.w", rng.normal(0, 0.3, (8, 6))), ("fc.w", rng.normal(0, 0.3, (6 * 16, 3))))]
    inits += [numpy_helper.from_array(np.array([0, 8, 16], np.int64), "tokens_shape"),
              numpy_helper.from_array(np.array([0], np.int64), "zero")]
    nodes = [helper.make_node("Conv", ["x", "conv.w", "conv.b"], ["conv"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["conv"], ["act"]),
             helper.make_node("Shape", ["act"], ["act_shape"]),  # a Shape read of a quantized tensor
             helper.make_node("Gather", ["act_shape", "zero"], ["batch"], axis=0),
             helper.make_node("Reshape", ["act", "tokens_shape"], ["tokens_cf"]),
             helper.make_node("Transpose", ["tokens_cf"], ["tokens"], perm=[0, 2, 1]),
             helper.make_node("MatMul", ["tokens", "mm.w"], ["mixed"]),
             helper.make_node("Relu", ["mixed"], ["mixed_act"]),
             helper.make_node("Concat", ["batch", "minus_one"], ["flat_shape"], axis=0),
             helper.make_node("Reshape", ["mixed_act", "flat_shape"], ["flat"]),
             helper.make_node("MatMul", ["flat", "fc.w"], ["logits"])]
    inits.append(numpy_helper.from_array(np.array([-1], np.int64), "minus_one"))
    graph = helper.make_graph(nodes, "shape_ops", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4, 4, 4])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])], inits)
    return _save(graph, path, opset=17)


def _save(graph: onnx.GraphProto, path: Path, opset: int) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="verdict_models")
    model.ir_version = 7 if opset <= 13 else 8
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path


# name -> how to write it
VERDICT_ZOO = {"legacy_transformer": legacy_transformer, "savedmodel_transformer": savedmodel_transformer, "constant_batchnorm": constant_batchnorm,
               "detection_head": detection_head, "shape_ops_qdq": shape_ops_qdq, "dlrm_legacy": dlrm_legacy,
               "dlrm_dynamo": dlrm_dynamo}
# name -> the ids its integer inputs may hold (the default draws up to 50; the DLRM tables have 40
# rows, and index_inputs cannot bound ids that reach an EmbeddingBag through a Loop body)
SAMPLE_VOCAB = {"dlrm_legacy": 40, "dlrm_dynamo": 40}
