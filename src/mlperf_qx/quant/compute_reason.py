"""The --explain line of an int8 GEMM/convolution, from what the node actually has: a weight or a
second activation (attention's Q·Kᵀ and P·V), and an int32 bias or none."""

from __future__ import annotations

import onnx_ir as ir

from ..ir.graph_edit import constant_array
from .op_specs import OpSpec, Role


def compute_reason(node: ir.Node, spec: OpSpec, biased_by_add: bool) -> str:
    """``biased_by_add``: a MatMul whose constant Add becomes its int32 bias (see annotate)."""
    if spec.role is not Role.COMPUTE:
        return spec.reason
    operands = [node.inputs[i] if i < len(node.inputs) else None for i in (0, 1)]
    constant = [v is not None and constant_array(v) is not None for v in operands]
    bias_index = spec.bias_input
    has_bias = biased_by_add or (bias_index is not None and bias_index < len(node.inputs)
                                 and node.inputs[bias_index] is not None
                                 and constant_array(node.inputs[bias_index]) is not None)
    if node.op_type == "Conv" or any(constant):
        operands_text = "int8 input and weight"
    else:
        operands_text = "int8 activations on both sides (no weight: both are computed at run time)"
    bias_text = "int32 bias (s_in*s_w)" if has_bias else "no bias"
    return f"{operands_text}, {bias_text}, int32 accumulation"
