"""Fold inference-mode BatchNormalization into the Conv, ConvTranspose or Gemm that feeds it.

BN(y) = (y - mean) * s + beta with s = gamma / sqrt(var + eps), and y = W x + b, so
BN(y) = (W * s) x + ((b - mean) * s + beta), applied per output channel.
A BatchNormalization that has no such producer becomes Mul + Add with per-channel constants,
which keeps the graph free of BatchNormalization (quantizers and runtimes treat it as a layer).
The fallback needs the input's rank: run InferShapes first.
Arithmetic is done in float64 and cast back, so the fold changes outputs by float rounding only.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from ..graph_edit import bypass, constant_array, new_initializer
from ..pass_base import QxPass


class FoldBatchNorm(QxPass):
    def call(self, model: ir.Model) -> ir.passes.PassResult:
        graph = model.graph
        modified = False
        for node in list(graph):
            if node.op_type != "BatchNormalization" or node.domain not in ("", "ai.onnx"):
                continue
            affine = _inference_affine(node)
            if affine is None:
                continue
            scale, shift = affine
            if _fold_into_producer(graph, node, scale, shift) or _as_mul_add(graph, node, scale, shift):
                modified = True
        return ir.passes.PassResult(model, modified)


def _inference_affine(bn: ir.Node) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-channel (scale, shift) of an inference BatchNormalization, or None if not foldable."""
    if len(bn.outputs) > 1 and any(v.uses() or v.is_graph_output() for v in bn.outputs[1:]):
        return None  # training mode: running statistics are outputs
    training = bn.attributes.get("training_mode")
    if training is not None and training.value:
        return None
    params = [constant_array(v) for v in bn.inputs[1:5]]
    if any(p is None for p in params):
        return None
    gamma, beta, mean, var = (p.astype(np.float64) for p in params)
    epsilon = bn.attributes.get("epsilon")
    eps = float(epsilon.value) if epsilon is not None else 1e-5
    scale = gamma / np.sqrt(var + eps)
    return scale, beta - mean * scale


def _sole_consumer_is(value: ir.Value, node: ir.Node) -> bool:
    return not value.is_graph_output() and all(use.node is node for use in value.uses())


def _fold_into_producer(graph: ir.Graph, bn: ir.Node, scale: np.ndarray, shift: np.ndarray) -> bool:
    x = bn.inputs[0]
    producer = x.producer() if x is not None else None
    if producer is None or producer.domain not in ("", "ai.onnx") or not _sole_consumer_is(x, bn):
        return False
    folder = {"Conv": _fold_conv, "ConvTranspose": _fold_conv_transpose, "Gemm": _fold_gemm}.get(
        producer.op_type
    )
    if folder is None or not folder(graph, producer, scale, shift):
        return False
    result = bn.outputs[0]
    if not bypass(graph, result, x):
        return False
    graph.remove(bn, safe=True)
    return True


def _bias_or_zeros(node: ir.Node, index: int, channels: int) -> np.ndarray | None:
    if len(node.inputs) > index and node.inputs[index] is not None:
        bias = constant_array(node.inputs[index])
        return None if bias is None else np.broadcast_to(bias.astype(np.float64), (channels,))
    return np.zeros(channels)


def _set_weight_and_bias(graph: ir.Graph, node: ir.Node, weight: np.ndarray, folded_w, folded_b) -> None:
    """Point input 1 (weight) and input 2 (bias) of ``node`` at new folded initializers."""
    w_value = node.inputs[1]
    node.replace_input_with(1, new_initializer(graph, f"{w_value.name}_bnfold", folded_w.astype(weight.dtype)))
    old_bias = node.inputs[2] if len(node.inputs) > 2 else None
    bias_base = old_bias.name if old_bias is not None else f"{w_value.name}_bias"
    bias_value = new_initializer(graph, f"{bias_base}_bnfold", folded_b.astype(weight.dtype))
    if len(node.inputs) <= 2:
        node.resize_inputs(3)
    node.replace_input_with(2, bias_value)


def _fold_conv(graph: ir.Graph, conv: ir.Node, scale: np.ndarray, shift: np.ndarray) -> bool:
    weight = constant_array(conv.inputs[1])
    if weight is None or weight.shape[0] != scale.shape[0]:
        return False
    bias = _bias_or_zeros(conv, 2, scale.shape[0])
    if bias is None:
        return False
    channel_scale = scale.reshape((-1,) + (1,) * (weight.ndim - 1))
    _set_weight_and_bias(graph, conv, weight, weight * channel_scale, bias * scale + shift)
    return True


def _fold_conv_transpose(graph: ir.Graph, conv: ir.Node, scale: np.ndarray, shift: np.ndarray) -> bool:
    group = conv.attributes.get("group")
    weight = constant_array(conv.inputs[1])
    # Output channels sit on axis 1 of a ConvTranspose weight; with groups they interleave.
    if weight is None or (group is not None and group.value != 1) or weight.shape[1] != scale.shape[0]:
        return False
    bias = _bias_or_zeros(conv, 2, scale.shape[0])
    if bias is None:
        return False
    channel_scale = scale.reshape((1, -1) + (1,) * (weight.ndim - 2))
    _set_weight_and_bias(graph, conv, weight, weight * channel_scale, bias * scale + shift)
    return True


def _fold_gemm(graph: ir.Graph, gemm: ir.Node, scale: np.ndarray, shift: np.ndarray) -> bool:
    weight = constant_array(gemm.inputs[1])
    trans_b = gemm.attributes.get("transB")
    trans_b = bool(trans_b.value) if trans_b is not None else False
    alpha = gemm.attributes.get("alpha")
    beta = gemm.attributes.get("beta")
    alpha = float(alpha.value) if alpha is not None else 1.0
    beta = float(beta.value) if beta is not None else 1.0
    channels = scale.shape[0]
    if weight is None or weight.ndim != 2 or weight.shape[0 if trans_b else 1] != channels:
        return False
    bias = _bias_or_zeros(gemm, 2, channels)
    if bias is None:
        return False
    column_scale = scale[:, None] if trans_b else scale[None, :]
    # Alpha and beta are absorbed into the folded constants, so they become 1.
    folded_w = weight.astype(np.float64) * alpha * column_scale
    folded_b = beta * bias * scale + shift
    _set_weight_and_bias(graph, gemm, weight, folded_w, folded_b)
    gemm.attributes.pop("alpha", None)
    gemm.attributes.pop("beta", None)
    return True


def _as_mul_add(graph: ir.Graph, bn: ir.Node, scale: np.ndarray, shift: np.ndarray) -> bool:
    x = bn.inputs[0]
    if x is None or x.shape is None or x.dtype is None:
        return False  # the channel axis cannot be placed without the rank
    rank = len(x.shape)
    if rank < 2:
        return False
    dtype = x.dtype.numpy()
    broadcast = (-1,) + (1,) * (rank - 2)
    name = bn.name or "batchnorm"
    scale_value = new_initializer(graph, f"{name}_scale", scale.reshape(broadcast).astype(dtype))
    shift_value = new_initializer(graph, f"{name}_shift", shift.reshape(broadcast).astype(dtype))
    mul = ir.Node("", "Mul", [x, scale_value], name=f"{name}_mul")
    add = ir.Node("", "Add", [mul.outputs[0], shift_value], name=f"{name}_add")
    mul.outputs[0].name = f"{name}_scaled"
    graph.insert_before(bn, [mul, add])
    result = bn.outputs[0]
    add.outputs[0].shape, add.outputs[0].type = result.shape, result.type
    if not bypass(graph, result, add.outputs[0]):
        graph.remove([mul, add], safe=True)
        return False
    graph.remove(bn, safe=True)
    return True
