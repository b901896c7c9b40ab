"""Lower a QDQ model to QOperator form: DQ -> op -> Q groups become int8 operators.

  The forms come from the OpSpec table: Conv -> QLinearConv, MatMul -> QLinearMatMul (ONNX);
  Add -> QLinearAdd, Mul -> QLinearMul (com.microsoft, as onnxruntime's own quantizer emits);
  Relu, Clip at 0, MaxPool and the shape ops run directly on int8 when input and output share a
  scale (exact). MatMul + int32 bias (a Linear on a 3-D input) becomes MatMulInteger, an int32
  Add of the bias, and a DequantizeLinear at s_in*s_w, followed by the usual QuantizeLinear.
Groups without a QuantizeLinear on their output (e.g. a Gemm producing float logits) stay in QDQ
form. The int8 operators requantize their output in one rounding where QDQ rounds after a float
op, so the two forms agree within one quantization step.
Last, the int8 activations are stored as uint8 at zero point 128 (uint8_activations.py): the same
grid value for value, on onnxruntime's fast x86 U8S8 kernels instead of its slow S8S8 ones.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from ..ir.graph_edit import new_initializer
from ..ir.pass_base import QxPass
from ..ir.passes.eliminate_dead_code import EliminateDeadCode
from .op_specs import INTEGER_MATMUL, OPS, is_int8_passthrough
from .uint8_activations import encode_activations_uint8
from .qoperator_opset import model_opset, passthrough_blocker


class LowerToQOperator(QxPass):
    preserves_numerics = False  # within one quantization step of the QDQ model

    def __init__(self, uint8_activations: bool = True):
        super().__init__()
        self.uint8_activations = uint8_activations  # False: int8 activations (S8S8), for benchmarks only
        self.kept_float: dict[str, str] = {}  # pass-through node -> why the model's opset keeps it float

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        graph = model.graph
        modified = False
        opset = model_opset(model)
        for node in list(graph):
            if node.domain not in ("", "ai.onnx"):
                continue
            spec = OPS.get(node.op_type)
            biased = _biased_matmul(node) if node.op_type == "MatMul" else None
            if biased is not None:
                modified |= _lower_biased_matmul(graph, node, *biased)
            elif spec is not None and spec.qoperator is not None:
                modified |= _lower_compute(graph, node)
            elif is_int8_passthrough(node.op_type):
                blocker = passthrough_blocker(node, opset)
                if blocker is not None:
                    self.kept_float[node.name] = blocker
                    continue
                modified |= _lower_passthrough(graph, node)
        if modified:
            if any(n.domain == "com.microsoft" for n in graph):
                model.opset_imports["com.microsoft"] = 1
            if self.uint8_activations:
                encode_activations_uint8(graph)
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


def _take_over(old: ir.Value, new: ir.Value, dtype: ir.DataType) -> None:
    """``new`` replaces ``old`` for every reader (graph outputs included) and takes its name."""
    name = old.name
    old.replace_all_uses_with(new, replace_graph_outputs=True)
    old.name = None
    new.name = name
    new.dtype = dtype


def _replace_output(graph: ir.Graph, node: ir.Node, quantize: ir.Node, replacement: ir.Node) -> None:
    """``replacement`` now produces what ``quantize`` produced; float readers of the old output
    read a DequantizeLinear of it."""
    new_int8 = replacement.outputs[0]
    graph.insert_after(node, replacement)
    _take_over(quantize.outputs[0], new_int8, ir.DataType.INT8)
    float_out = node.outputs[0]
    readers = [u for u in float_out.uses() if u.node is not quantize]
    if readers or float_out.is_graph_output():
        dq = ir.Node("", "DequantizeLinear", [new_int8, quantize.inputs[1], quantize.inputs[2]],
                     name=f"{replacement.name}_DequantizeLinear")
        graph.insert_after(replacement, dq)
        _take_over(float_out, dq.outputs[0], ir.DataType.FLOAT)


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
    form = OPS[node.op_type].qoperator
    domain, op_type = form.domain, form.op_type
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
    if node.op_type == "Clip":
        inputs = [dq.inputs[0], *_int8_bounds(graph, node, dq.inputs[1])]
    lowered = ir.Node("", node.op_type, inputs, attributes=node.attributes.values(), name=f"{node.name}_int8")
    _replace_output(graph, node, quantize, lowered)
    return True


def _int8_bounds(graph: ir.Graph, clip: ir.Node, scale: ir.Value) -> list[ir.Value | None]:
    """Clip's float bounds on the shared int8 grid, saturated: with the scale taken from Clip's
    output range, its upper bound lands on 127 or beyond, so the int8 Clip is exact."""
    s = np.float64(scale.const_value.numpy())
    bounds: list[ir.Value | None] = []
    for index in (1, 2):
        value = clip.inputs[index] if index < len(clip.inputs) else None
        if value is None or value.const_value is None:
            bounds.append(None)
            continue
        q = np.clip(np.rint(np.float64(value.const_value.numpy()) / s), -128, 127).astype(np.int8)
        bounds.append(new_initializer(graph, f"{value.name}_int8", np.asarray(q).reshape(())))
    return bounds


def _biased_matmul(matmul: ir.Node) -> tuple[ir.Node, ir.Node] | None:
    """(Add, bias DequantizeLinear) of a MatMul with an int32 bias whose sum is requantized."""
    uses = list(matmul.outputs[0].uses())
    if len(uses) != 1 or uses[0].node.op_type != "Add":
        return None
    add = uses[0].node
    bias = _dequantized(add.inputs[1 - uses[0].idx])
    quantize = _output_quantizer(add)
    if bias is None or bias.inputs[0].dtype != ir.DataType.INT32 or quantize is None:
        return None
    return add, bias


def _lower_biased_matmul(graph: ir.Graph, matmul: ir.Node, add: ir.Node, bias: ir.Node) -> bool:
    """MatMul(DQ x, DQ w) + DQ(b) -> Q   becomes
    MatMulInteger(x, w) + b (int32) -> DequantizeLinear(s_x*s_w) -> Q: the same integer
    arithmetic QLinearConv does with its bias, one rounding at the end."""
    operands = [_dequantized(v) for v in matmul.inputs[:2]]
    if any(d is None for d in operands):
        return False
    domain, op_type = INTEGER_MATMUL
    product = ir.Node(domain, op_type, [operands[0].inputs[0], operands[1].inputs[0]], name=f"{matmul.name}_{op_type}")
    terms = [product.outputs[0], bias.inputs[0]]
    if add.inputs[0] is not matmul.outputs[0]:
        terms.reverse()  # keep the Add's operand order: the audit compares edges position by position
    accumulate = ir.Node("", "Add", terms, name=f"{add.name}_int32")
    to_float = ir.Node("", "DequantizeLinear", [accumulate.outputs[0], bias.inputs[1], bias.inputs[2]],
                       name=f"{add.name}_DequantizeLinear")
    product.outputs[0].dtype = accumulate.outputs[0].dtype = ir.DataType.INT32
    product.outputs[0].name, accumulate.outputs[0].name = f"{matmul.outputs[0].name}_int32", f"{add.outputs[0].name}_int32"
    graph.insert_after(add, [product, accumulate, to_float])
    _take_over(add.outputs[0], to_float.outputs[0], ir.DataType.FLOAT)
    return True
