"""QOperator activations stored as uint8 with zero point 128: the same grid as int8 with zero point 0.

For every int8 activation q (round half to even, saturated to [-128, 127]) the uint8 encoding
stores u = q + 128 with the same scale, so (u - 128) * s == q * s for every value:

    QuantizeLinear(x, s, uint8 128) = clip(rint(x / s) + 128, 0, 255) = QuantizeLinear(x, s, int8 0) + 128

Nothing about the scheme changes (symmetric, per-tensor, one scale); only the bytes in memory move
by 128. Why: onnxruntime's x86 int8 kernels are U8S8 (uint8 activations, int8 weights). With int8
activations QLinearConv/QLinearMatMul/MatMulInteger fall back to its S8S8 path, which on an AVX2
CPU measured 4-8x slower than FP32 (benchmarks/bench_inference.py). Weights stay int8.

Ops whose int8 form depends on the zero point are rewritten on the new grid:
  Relu(q)          ->  Max(u, 128)          (uint8 has no Relu; max(q, 0) is max(u, 128))
  Clip(q, lo, hi)  ->  Clip(u, lo+128, hi+128)
  MatMulInteger    ->  the activation operands get their zero point 128 as an input
  QLinearAdd/Mul   ->  a constant operand moves to uint8 too (one type for all their operands)
Pass-through ops (MaxPool, Reshape, Transpose...) do not look at values and need nothing.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from ..ir.graph_edit import new_initializer
from .op_specs import INTEGER_MATMUL, QOPERATOR_FORMS, Role

ZERO_POINT = 128  # uint8 value of int8 zero


def symmetric_zero_point(dtype: np.dtype) -> int:
    """The zero point of the symmetric grid in ``dtype``: 0, or 128 in uint8, whose u = q + 128
    holds value for value what int8 q holds at zero point 0 (same scale, same [-128, 127] range)."""
    return ZERO_POINT if dtype == np.uint8 else 0


def encode_activations_uint8(graph: ir.Graph) -> bool:
    """Move every int8 activation of a lowered (QOperator) graph to uint8 with zero point 128.
    Initializers (int8 weights) are left as they are. Returns whether anything changed."""
    activations = [v for v in _int8_values(graph) if not v.is_initializer()]
    if not activations:
        return False
    zero_points: dict[int, ir.Value] = {}  # id(old int8 zero point) -> its uint8 twin
    for node in list(graph):
        for index in _zero_point_positions(node):
            old = node.inputs[index]
            if old is None or old.const_value is None or old.dtype != ir.DataType.INT8:
                continue
            if id(old) not in zero_points:
                zero_points[id(old)] = _uint8_zero_point(graph, old)
            node.replace_input_with(index, zero_points[id(old)])
        if _one_type_for_all(node):
            _constant_operands_to_uint8(graph, node)
        if node.op_type == INTEGER_MATMUL[1] and node.domain == INTEGER_MATMUL[0]:
            _integer_matmul_zero_points(graph, node)
        elif node.op_type == "Relu" and _reads_int8(node):
            _relu_as_max(graph, node)
        elif node.op_type == "Clip" and _reads_int8(node):
            _shift_clip_bounds(graph, node)
    for value in activations:
        value.dtype = ir.DataType.UINT8
    return True


def _int8_values(graph: ir.Graph) -> list[ir.Value]:
    return [v for node in graph for v in node.outputs if v.dtype == ir.DataType.INT8]


def _reads_int8(node: ir.Node) -> bool:
    """Reads an int8 activation (or one already moved to uint8 by an earlier rewrite in this pass)."""
    value = node.inputs[0] if node.inputs else None
    return value is not None and value.dtype in (ir.DataType.INT8, ir.DataType.UINT8) and not value.is_initializer()


def _zero_point_positions(node: ir.Node) -> list[int]:
    """Input positions of ``node`` that hold the zero point of an int8 activation."""
    if node.op_type == "QuantizeLinear":
        return [2] if len(node.inputs) > 2 else []
    if node.op_type == "DequantizeLinear":
        return [2] if len(node.inputs) > 2 and _reads_int8(node) else []
    spec = QOPERATOR_FORMS.get(node.op_type)
    if spec is None:
        return []
    form = spec.qoperator
    positions = [o.zero_point for o in form.operands
                 if o.value < len(node.inputs) and node.inputs[o.value] is not None
                 and (_one_type_for_all(node) or not node.inputs[o.value].is_initializer())]
    return positions + [form.output_zero_point]


def _one_type_for_all(node: ir.Node) -> bool:
    """QLinearAdd/QLinearMul take every operand in one type; QLinearConv/QLinearMatMul keep int8 weights."""
    spec = QOPERATOR_FORMS.get(node.op_type)
    return spec is not None and spec.role is Role.ELEMENTWISE


def _constant_operands_to_uint8(graph: ir.Graph, node: ir.Node) -> None:
    for operand in QOPERATOR_FORMS[node.op_type].qoperator.operands:
        value = node.inputs[operand.value] if operand.value < len(node.inputs) else None
        if value is None or not value.is_initializer() or value.dtype != ir.DataType.INT8:
            continue
        shifted = (value.const_value.numpy().astype(np.int16) + ZERO_POINT).astype(np.uint8)
        node.replace_input_with(operand.value, new_initializer(graph, f"{value.name}_uint8", shifted))


def _uint8_zero_point(graph: ir.Graph, old: ir.Value) -> ir.Value:
    values = old.const_value.numpy()
    if np.any(values != 0):
        raise ValueError(f"zero point '{old.name}' is not 0: not a symmetric int8 activation")
    return new_initializer(graph, f"{old.name}_uint8", np.full(values.shape, ZERO_POINT, np.uint8))


def _integer_matmul_zero_points(graph: ir.Graph, node: ir.Node) -> None:
    """MatMulInteger(a, b) reads its zero points as inputs 2 and 3 (absent: 0)."""
    inputs = list(node.inputs) + [None] * (4 - len(node.inputs))
    for operand in (0, 1):
        value = inputs[operand]
        if value is not None and value.dtype == ir.DataType.INT8 and not value.is_initializer():
            inputs[operand + 2] = new_initializer(graph, f"{node.name}_zero_point_{operand}",
                                                  np.array(ZERO_POINT, np.uint8))
    while inputs and inputs[-1] is None:
        inputs.pop()
    _rewire(node, inputs)


def _relu_as_max(graph: ir.Graph, relu: ir.Node) -> None:
    """Max, not Clip: a lowered Clip(q, 0) stays a Clip, so the audit can tell the two apart."""
    zero = new_initializer(graph, f"{relu.name}_uint8_zero", np.array(ZERO_POINT, np.uint8))
    maximum = ir.Node("", "Max", [relu.inputs[0], zero], name=f"{relu.name}_uint8")
    graph.insert_after(relu, maximum)
    name = relu.outputs[0].name
    relu.outputs[0].replace_all_uses_with(maximum.outputs[0], replace_graph_outputs=True)
    relu.outputs[0].name = None
    maximum.outputs[0].name = name
    maximum.outputs[0].dtype = ir.DataType.UINT8
    graph.remove(relu, safe=True)


def _shift_clip_bounds(graph: ir.Graph, clip: ir.Node) -> None:
    inputs = list(clip.inputs)
    for index in (1, 2):
        bound = inputs[index] if index < len(inputs) else None
        if bound is None or bound.const_value is None or bound.dtype != ir.DataType.INT8:
            continue
        shifted = bound.const_value.numpy().astype(np.int16) + ZERO_POINT
        inputs[index] = new_initializer(graph, f"{bound.name}_uint8", shifted.astype(np.uint8))
    _rewire(clip, inputs)


def _rewire(node: ir.Node, inputs: list[ir.Value | None]) -> None:
    for index, value in enumerate(inputs):
        if index < len(node.inputs):
            node.replace_input_with(index, value)
    if len(inputs) > len(node.inputs):
        node.resize_inputs(len(inputs))
        for index in range(len(node.inputs)):
            node.replace_input_with(index, inputs[index])
