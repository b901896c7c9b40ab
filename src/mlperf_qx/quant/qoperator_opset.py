"""Which int8 pass-through ops the model's opset allows in a QOperator file.

The pass-through lowering runs Relu, Clip, MaxPool... directly on the 8-bit tensor. ONNX added
8-bit types to these ops late: Relu-14, Clip-12, MaxPool-12. A model that imports opset 11 or 12
(PaddleOCR's exports) would be an invalid file with an int8 Relu in it, so such an op stays in
float between its DequantizeLinear and QuantizeLinear, and the decision says why. The opset is not
converted: the candidate keeps the reference's opset, so verify compares like with like.
"""

from __future__ import annotations

import onnx
import onnx_ir as ir

_ONNX_TYPE = {ir.DataType.INT8: "tensor(int8)", ir.DataType.UINT8: "tensor(uint8)"}


def model_opset(model: ir.Model) -> int:
    return int(model.opset_imports.get("", model.opset_imports.get("ai.onnx", onnx.defs.onnx_opset_version())))


def takes_type(op_type: str, opset: int, onnx_type: str) -> bool:
    """Whether ``op_type`` at ``opset`` accepts ``onnx_type`` on its first input."""
    try:
        schema = onnx.defs.get_schema(op_type, opset, "")
    except onnx.defs.SchemaError:
        return False
    type_param = schema.inputs[0].type_str
    allowed = next((c.allowed_type_strs for c in schema.type_constraints if c.type_param_str == type_param),
                   [type_param])
    return onnx_type in allowed


def first_opset_taking(op_type: str, onnx_type: str, since: int) -> int | None:
    for opset in range(since, onnx.defs.onnx_opset_version() + 1):
        if takes_type(op_type, opset, onnx_type):
            return opset
    return None


def passthrough_blocker(node: ir.Node, opset: int) -> str | None:
    """Why ``node`` cannot run on its 8-bit input at ``opset``, or None when it can (or when its
    input is not a dequantized 8-bit tensor: the lowering then leaves it alone anyway)."""
    producer = node.inputs[0].producer() if node.inputs and node.inputs[0] is not None else None
    if producer is None or producer.op_type != "DequantizeLinear":
        return None
    onnx_type = _ONNX_TYPE.get(producer.inputs[0].dtype)
    if onnx_type is None or takes_type(node.op_type, opset, onnx_type):
        return None
    needed = first_opset_taking(node.op_type, onnx_type, opset + 1)
    short = onnx_type[len("tensor("):-1]
    return (f"{node.op_type} takes no {short} at the model's opset {opset}"
            + (f" ({short} {node.op_type} needs opset {needed})" if needed else "")
            + "; in the QOperator file it runs in float between DequantizeLinear and QuantizeLinear "
              "(the opset is kept: verify compares the candidate with the reference as given)")
