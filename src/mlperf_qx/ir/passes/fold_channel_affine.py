"""Fold a per-output-channel Mul or Add by a constant into the Conv/ConvTranspose/Gemm/MatMul before it.

Exporters write inference BatchNorm in several shapes: a BatchNormalization node (FoldBatchNorm
handles it), or an explicit Mul then Add of per-channel constants (tf2onnx after a depthwise
conv, torch layer-scale, our own BatchNorm fallback). Whoever wrote it, y = W x + b followed by
y * c + d is (W * c) x + (b * c + d) per output channel, so the pair disappears into the layer's
weights and bias and the quantizer sees one layer with one weight scale, as the framework meant.

Only when the producer's output has no other reader and the constant varies along the output
channel axis alone (or is a scalar): anything else would change what other readers see or
broadcast the output to a new shape. MatMul has no bias input, so only a Mul folds into it.
Arithmetic in float64, cast back: outputs change by float rounding only.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from ..graph_edit import bypass, constant_array, new_initializer
from ..pass_base import QxPass
from .fold_batchnorm import _fold_conv, _fold_conv_transpose, _fold_gemm

_CHANNEL_AXIS_FROM_END = {"Conv": None, "ConvTranspose": None, "Gemm": -1, "MatMul": -1}  # None: axis 1


class FoldChannelAffine(QxPass):
    def call(self, model: ir.Model) -> ir.passes.PassResult:
        graph = model.graph
        modified = False
        changed = True
        while changed:  # a Mul folded in brings the Add after it next to the layer
            changed = False
            for node in list(graph):
                if node.op_type in ("Mul", "Add") and node.domain in ("", "ai.onnx") and _fold(graph, node):
                    changed = modified = True
        return ir.passes.PassResult(model, modified)


def _fold(graph: ir.Graph, node: ir.Node) -> bool:
    for data_index in (0, 1):
        x, constant = node.inputs[data_index], node.inputs[1 - data_index]
        producer = x.producer() if x is not None else None
        c = constant_array(constant)
        if producer is None or c is None or producer.op_type not in _CHANNEL_AXIS_FROM_END:
            continue
        if producer.domain not in ("", "ai.onnx") or x.is_graph_output() or len(x.uses()) != 1:
            continue
        per_channel = _per_channel(c, x, producer)
        if per_channel is None:
            continue
        scale, shift = (per_channel, np.zeros_like(per_channel)) if node.op_type == "Mul" else (
            np.ones_like(per_channel), per_channel)
        if not _fold_into(graph, producer, scale, shift):
            continue
        if not bypass(graph, node.outputs[0], x):
            return False
        graph.remove(node, safe=True)
        return True
    return False


def _channels(producer: ir.Node) -> int | None:
    weight = constant_array(producer.inputs[1]) if len(producer.inputs) > 1 else None
    if weight is None:
        return None
    if producer.op_type == "Conv":
        return weight.shape[0]
    if producer.op_type == "ConvTranspose":
        group = producer.attributes.get("group")
        return weight.shape[1] * (group.value if group is not None else 1)
    if weight.ndim != 2:
        return None
    trans_b = producer.attributes.get("transB")
    return weight.shape[0] if producer.op_type == "Gemm" and trans_b is not None and trans_b.value else weight.shape[1]


def _per_channel(c: np.ndarray, x: ir.Value, producer: ir.Node) -> np.ndarray | None:
    """The constant as a float64 vector over output channels, or None if it is not one."""
    channels = _channels(producer)
    if channels is None or c.dtype != np.float32 or x.shape is None or c.ndim > len(x.shape):
        return None
    if c.size == 1:
        return np.full(channels, float(c.reshape(-1)[0]))
    rank = len(x.shape)
    axis = 1 if _CHANNEL_AXIS_FROM_END[producer.op_type] is None else rank - 1
    dims = (1,) * (rank - c.ndim) + c.shape  # broadcast from the right
    if c.size != channels or dims[axis] != channels or any(d != 1 for i, d in enumerate(dims) if i != axis):
        return None
    return c.astype(np.float64).reshape(-1)


def _fold_into(graph: ir.Graph, producer: ir.Node, scale: np.ndarray, shift: np.ndarray) -> bool:
    if producer.op_type == "MatMul":
        return not np.any(shift) and _fold_matmul(graph, producer, scale)
    folder = {"Conv": _fold_conv, "ConvTranspose": _fold_conv_transpose, "Gemm": _fold_gemm}[producer.op_type]
    return folder(graph, producer, scale, shift)


def _fold_matmul(graph: ir.Graph, matmul: ir.Node, scale: np.ndarray) -> bool:
    weight = constant_array(matmul.inputs[1])
    if weight is None or weight.ndim != 2 or weight.shape[1] != scale.shape[0]:
        return False
    folded = (weight.astype(np.float64) * scale[None, :]).astype(weight.dtype)
    matmul.replace_input_with(1, new_initializer(graph, f"{matmul.inputs[1].name}_scaled", folded))
    return True
