"""Masks written with infinities: ``Where(mask, 0, -inf)`` added to attention scores (torch's
TorchScript exporter on GPT-2, DistilBERT, ALBERT).

An int8 grid cannot hold -inf, and the calibration would rightly refuse an infinite activation as an
overflow. But these infinities are constants of the model, not overflows: every tensor computed from
a constant holding ±inf (until an op that absorbs it, as Softmax turns -inf into 0) is a mask path,
and the quantizable nodes that read one stay FP32 with the reason. Decided from the graph alone,
before calibration, so those tensors are never observed; an infinity from anywhere else is still
reported as the overflow it is.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from .op_specs import spec_for

# Ops that carry an infinite input value into their output (a mask is built, broadcast and added
# with these). Anything else ends a mask path: Softmax and Exp absorb -inf, and a Clip or Max whose
# bound is ±inf (Clip(x, 0, inf): a ReLU) computes finite values from finite data.
_CARRIES_INFINITY = {"Where": (1, 2), "Add": None, "Sub": None, "Mul": None, "Neg": None, "Cast": (0,), "Expand": (0,),
                     "Reshape": (0,), "Unsqueeze": (0,), "Squeeze": (0,), "Flatten": (0,), "Transpose": (0,),
                     "Slice": (0,), "Gather": (0,), "Tile": (0,), "Identity": (0,), "Concat": None}


def infinite_constants(graph: ir.Graph) -> set[str]:
    names = set()
    for name, value in graph.initializers.items():
        tensor = value.const_value
        if tensor is None or value.dtype not in (ir.DataType.FLOAT, ir.DataType.FLOAT16, ir.DataType.DOUBLE):
            continue
        if np.isinf(tensor.numpy()).any():
            names.add(name)
    return names


def mask_paths(graph: ir.Graph) -> dict[str, str]:
    """tensor -> the infinite constant it is computed from, for every float tensor on a mask path."""
    origin = {name: name for name in infinite_constants(graph)}
    if not origin:
        return {}
    for node in graph:  # topological order: canonicalization sorts the graph
        if node.op_type not in _CARRIES_INFINITY:
            continue
        source = next((origin[v.name] for v in _inputs_at(node, _CARRIES_INFINITY[node.op_type]) if v.name in origin),
                      None)
        if source is None:
            continue
        for out in node.outputs:
            if out.dtype in (ir.DataType.FLOAT, ir.DataType.FLOAT16, ir.DataType.DOUBLE, None):
                origin[out.name] = source
    return origin


def nodes_reading_infinite_masks(model: ir.Model) -> dict[str, str]:
    """Quantizable nodes reading a mask path, with the reason they stay FP32."""
    paths = mask_paths(model.graph)
    kept = {}
    for node in model.graph:
        spec = spec_for(node.op_type, node.domain)
        if spec is None or not spec.quantized:
            continue
        operands = set(spec.weight_inputs) | set(spec.data_inputs if spec.data_inputs is not None else range(len(node.inputs)))
        tensor = next((v.name for v in _inputs_at(node, tuple(operands)) if v.name in paths), None)
        if tensor is not None:
            source = "" if paths[tensor] == tensor else f", computed from the constant '{paths[tensor]}'"
            kept[node.name] = (f"reads '{tensor}'{source}, which holds ±inf: masking values, not an overflow; "
                               "int8 cannot hold infinity; kept FP32")
    return kept


def _inputs_at(node: ir.Node, indices: tuple[int, ...] | None) -> list[ir.Value]:
    chosen = range(len(node.inputs)) if indices is None else indices
    return [node.inputs[i] for i in chosen if i < len(node.inputs) and node.inputs[i] is not None]
