"""Lower a QDQ model to QOperator form: DQ -> op -> Q groups become int8 operators.

  Conv -> QLinearConv, MatMul -> QLinearMatMul (ONNX); Add -> QLinearAdd, Mul -> QLinearMul
  (com.microsoft, as onnxruntime's own quantizer emits); Relu, MaxPool and the shape ops run
  directly on int8 when input and output share a scale (exact).
Groups without a QuantizeLinear on their output (e.g. a Gemm producing float logits) stay in QDQ
form. The int8 operators requantize their output in one rounding where QDQ rounds after a float
op, so the two forms agree within one quantization step.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from ..ir.pass_base import QxPass
from ..ir.passes.eliminate_dead_code import EliminateDeadCode

_COMPUTE = {
    "Conv": ("", "QLinearConv"),
    "MatMul": ("", "QLinearMatMul"),
    "Add": ("com.microsoft", "QLinearAdd"),
    "Mul": ("com.microsoft", "QLinearMul"),
}
_INT8_PASSTHROUGH = {"Relu", "MaxPool", "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze"}


class LowerToQOperator(QxPass):
    preserves_numerics = False  # within one quantization step of the QDQ model

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        graph = model.graph
        modified = False
        for node in list(graph):
            if node.domain not in ("", "ai.onnx"):
                continue
            if node.op_type in _COMPUTE:
                modified |= _lower_compute(graph, node)
            elif node.op_type in _INT8_PASSTHROUGH:
                modified |= _lower_passthrough(graph, node)
        if modified:
            if any(n.domain == "com.microsoft" for n in graph):
                model.opset_imports["com.microsoft"] = 1
            EliminateDeadCode()(model)
            graph.sort()
        return ir.passes.PassResult(model, modified)


def _dequantized(value: ir.Value | None) -> ir.Node | None:
    producer = value.producer() if value is not None else None
    return producer if producer is not None and producer.op_type == "DequantizeLinear" else None


def _output_quantizer(node: ir.Node) -> ir.Node | None:
    for use in node.outputs[0].uses():
        if use.node.op_type == "QuantizeLinear" and use.idx == 0:
            return use.node
    return None


def _replace_output(graph: ir.Graph, node: ir.Node, quantize: ir.Node, replacement: ir.Node) -> None:
    """``replacement`` now produces what ``quantize`` produced; float readers of the old output
    read a DequantizeLinear of it."""
    old_int8 = quantize.outputs[0]
    new_int8 = replacement.outputs[0]
    graph.insert_after(node, replacement)
    name = old_int8.name
    old_int8.replace_all_uses_with(new_int8, replace_graph_outputs=True)
    old_int8.name = None
    new_int8.name = name
    new_int8.dtype = ir.DataType.INT8
    float_out = node.outputs[0]
    readers = [u for u in float_out.uses() if u.node is not quantize]
    if readers or float_out.is_graph_output():
        dq = ir.Node("", "DequantizeLinear", [new_int8, quantize.inputs[1], quantize.inputs[2]],
                     name=f"{replacement.name}_DequantizeLinear")
        graph.insert_after(replacement, dq)
        float_name = float_out.name
        float_out.replace_all_uses_with(dq.outputs[0], replace_graph_outputs=True)
        float_out.name = None
        dq.outputs[0].name = float_name
        dq.outputs[0].dtype = ir.DataType.FLOAT


def _lower_compute(graph: ir.Graph, node: ir.Node) -> bool:
    quantize = _output_quantizer(node)
    operands = [_dequantized(v) for v in node.inputs[:2]]
    if quantize is None or any(d is None for d in operands) or len(node.inputs) < 2:
        return False
    inputs: list[ir.Value | None] = []
    for dq in operands:
        inputs.extend([dq.inputs[0], dq.inputs[1], dq.inputs[2]])
    inputs.extend([quantize.inputs[1], quantize.inputs[2]])
    if node.op_type == "Conv" and len(node.inputs) > 2 and node.inputs[2] is not None:
        bias = _dequantized(node.inputs[2])
        if bias is None or bias.inputs[0].dtype != ir.DataType.INT32:
            return False
        inputs.append(bias.inputs[0])
    domain, op_type = _COMPUTE[node.op_type]
    attributes = {k: v for k, v in node.attributes.items()} if node.op_type == "Conv" else {}
    lowered = ir.Node(domain, op_type, inputs, attributes=attributes.values(), name=f"{node.name}_{op_type}")
    _replace_output(graph, node, quantize, lowered)
    return True


def _same_scale(a: ir.Value, b: ir.Value) -> bool:
    if a is b:
        return True
    if a.const_value is None or b.const_value is None:
        return False
    return bool(np.array_equal(a.const_value.numpy(), b.const_value.numpy()))


def _lower_passthrough(graph: ir.Graph, node: ir.Node) -> bool:
    dq = _dequantized(node.inputs[0]) if node.inputs else None
    quantize = _output_quantizer(node)
    if dq is None or quantize is None or not _same_scale(dq.inputs[1], quantize.inputs[1]):
        return False
    if node.op_type == "MaxPool" and len(node.outputs) > 1:
        return False  # the Indices output has no int8 form
    inputs = [dq.inputs[0], *node.inputs[1:]]
    lowered = ir.Node("", node.op_type, inputs, attributes=node.attributes.values(), name=f"{node.name}_int8")
    _replace_output(graph, node, quantize, lowered)
    return True
