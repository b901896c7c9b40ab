"""Insert QuantizeLinear/DequantizeLinear pairs (QDQ format) following a QuantPlan.

Activations: T -> Q(s, 0) -> DQ(s, 0) -> quantized consumers (FP32 consumers keep reading T).
Weights: stored as int8 initializers (narrow range) behind a DequantizeLinear.
Biases: stored as int32 at scale s_input * s_weight behind a DequantizeLinear.

Every consumer of a constant gets its own int8 copy, scale, zero point and DequantizeLinear:
onnxruntime's QDQ S8->U8 rewrite (``session.x64quantprecision``) converts each DQ's operands in
place and fails on a second DQ of the same initializer ("Attempt to replace the existing tensor"),
and exporters share constants freely (GELU's 1.0 read by every block, deduplicated biases, tied
weights). Node and value names are made unique from the constant's and the consumer's names.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx_ir as ir

from ..ir.graph_edit import add_initializer, claim_fresh_name, constant_array
from ..kernels.quantize import quantize_bias_int32, quantize_int8
from .annotate import BiasUse, QuantPlan
from .scales import weight_scale


@dataclass
class QdqCounts:
    activations: int = 0
    weights: int = 0
    biases: int = 0


class _Builder:
    def __init__(self, model: ir.Model):
        self.graph = model.graph
        self.nodes = {node.name: node for node in self.graph}
        self.node_names = set(self.nodes)
        self.value_names = {v.name for v in self.graph.inputs} | set(self.graph.initializers) | {
            v.name for node in self.graph for v in node.outputs}
        self.tensor_scales: dict[str, np.float32] = {}

    def unique_node_name(self, base: str) -> str:
        return claim_fresh_name(base, self.node_names)

    def unique_value_name(self, base: str) -> str:
        return claim_fresh_name(base, self.value_names)

    def initializer(self, name: str, array: np.ndarray) -> ir.Value:
        """A new initializer, its name claimed in ``value_names`` (no scan of the graph per name)."""
        return add_initializer(self.graph, self.unique_value_name(name), array)

    def scalar(self, name: str, value) -> ir.Value:
        return self.initializer(name, np.asarray(value))

    def dequantize(self, quantized: ir.Value, scale: ir.Value, zero: ir.Value, name: str) -> ir.Node:
        node = ir.Node("", "DequantizeLinear", [quantized, scale, zero], name=self.unique_node_name(f"{name}_DequantizeLinear"))
        node.outputs[0].name = self.unique_value_name(f"{name}_dequantized")
        node.outputs[0].dtype = ir.DataType.FLOAT
        node.outputs[0].shape = quantized.shape
        return node


def insert_qdq(model: ir.Model, plan: QuantPlan, activation_scales: dict[str, np.float32]) -> tuple[QdqCounts, dict[str, float]]:
    """Rewrite ``model`` in place; returns counts and the scale of every quantized tensor."""
    builder = _Builder(model)
    counts = QdqCounts()
    for tensor, uses in plan.activation_uses.items():
        scale = activation_scales[plan.group_of(tensor)]
        _quantize_activation(builder, tensor, uses, scale)
        counts.activations += 1
    for node_name, index in plan.weight_uses:
        _quantize_weight(builder, builder.nodes[node_name], index)
        counts.weights += 1
    for use in plan.bias_uses:
        if _quantize_bias(builder, use):
            counts.biases += 1
    model.graph.sort()
    return counts, {k: float(v) for k, v in builder.tensor_scales.items()}


def _quantize_activation(builder: _Builder, tensor: str, uses: list[tuple[str, int]], scale: np.float32) -> None:
    """One Q -> DQ pair per tensor, read by all its quantized consumers.

    Per-consumer pairs were tried: onnxruntime's common-subexpression pass merges them back, and
    its x86 S8->U8 rewrite then skips a Q read twice, so a residual fork stays a float Conv in
    QDQ form on x86 (``--format qoperator`` runs it as QLinearConv)."""
    value = builder.nodes[uses[0][0]].inputs[uses[0][1]]
    scale_value = builder.scalar(f"{tensor}_scale", np.float32(scale))
    zero = builder.scalar(f"{tensor}_zero_point", np.int8(0))
    quantize = ir.Node("", "QuantizeLinear", [value, scale_value, zero], name=builder.unique_node_name(f"{tensor}_QuantizeLinear"))
    quantize.outputs[0].name = builder.unique_value_name(f"{tensor}_quantized")
    quantize.outputs[0].dtype = ir.DataType.INT8
    quantize.outputs[0].shape = value.shape
    dequantize = builder.dequantize(quantize.outputs[0], scale_value, zero, tensor)
    producer = value.producer()
    if producer is not None:
        builder.graph.insert_after(producer, [quantize, dequantize])
    else:
        builder.graph.insert_before(next(iter(builder.graph)), [quantize, dequantize])
    for node_name, index in uses:
        builder.nodes[node_name].replace_input_with(index, dequantize.outputs[0])
    builder.tensor_scales[tensor] = np.float32(scale)


def _quantize_weight(builder: _Builder, node: ir.Node, index: int) -> None:
    value = node.inputs[index]
    if value.producer() is not None and value.producer().op_type == "DequantizeLinear":
        return  # already quantized (a node listing the same constant twice)
    weights = constant_array(value).astype(np.float32)
    scale = weight_scale(weights)
    shared = len(value.uses()) > 1
    base = f"{value.name}_{node.name}" if shared else value.name
    quantized = builder.initializer(f"{base}_quantized", quantize_int8(weights, scale, narrow=True))
    scale_value = builder.scalar(f"{base}_scale", scale)
    zero = builder.scalar(f"{base}_zero_point", np.int8(0))
    dequantize = builder.dequantize(quantized, scale_value, zero, base)
    builder.graph.insert_before(next(iter(builder.graph)), dequantize)
    node.replace_input_with(index, dequantize.outputs[0])
    builder.tensor_scales[value.name] = scale


def _input_scale(builder: _Builder, node: ir.Node, index: int) -> np.float32 | None:
    """The scale of a DequantizeLinear feeding ``node.inputs[index]``, if any."""
    value = node.inputs[index]
    producer = value.producer() if value is not None else None
    if producer is None or producer.op_type != "DequantizeLinear":
        return None
    return np.float32(producer.inputs[1].const_value.numpy())


def _quantize_bias(builder: _Builder, use: BiasUse) -> bool:
    compute, node = builder.nodes[use.compute], builder.nodes[use.node]
    s_input, s_weight = _input_scale(builder, compute, use.data_index), _input_scale(builder, compute, use.weight_index)
    if s_input is None or s_weight is None:
        return False  # the bias stays FP32 when an operand is not quantized
    value = node.inputs[use.bias_index]
    quantized, scale = quantize_bias_int32(constant_array(value), s_input, s_weight)
    base = f"{value.name}_{node.name}" if len(value.uses()) > 1 else value.name
    q_value = builder.initializer(f"{base}_quantized", quantized)
    scale_value = builder.scalar(f"{base}_scale", scale)
    zero = builder.scalar(f"{base}_zero_point", np.int32(0))
    dequantize = builder.dequantize(q_value, scale_value, zero, base)
    builder.graph.insert_before(next(iter(builder.graph)), dequantize)
    node.replace_input_with(use.bias_index, dequantize.outputs[0])
    builder.tensor_scales[value.name] = scale
    return True
