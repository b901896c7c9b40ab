"""Remove Reshape nodes whose output has exactly the shape of their input.

tf2onnx leaves such Reshapes around the 1x1 convolutions of squeeze-and-excitation blocks, and
whether its optimizer removes a given one depends on the iteration order of a Python set, so
the string-hash seed of the exporting process decided the graph. Removing every one of them
makes the export the same in every process; a Reshape to the same static shape copies its
input unchanged, so numerics cannot change.
"""

from __future__ import annotations

import onnx_ir as ir

from ..graph_edit import bypass
from ..pass_base import QxPass


class RemoveNoOpReshapes(QxPass):
    def call(self, model: ir.Model) -> ir.passes.PassResult:
        graph = model.graph
        modified = False
        for node in list(graph):
            if node.domain not in ("", "ai.onnx") or node.op_type != "Reshape" or not _is_noop(node):
                continue
            if not bypass(graph, node.outputs[0], node.inputs[0]):
                continue
            graph.remove(node, safe=True)
            modified = True
        return ir.passes.PassResult(model, modified)


def _is_noop(node: ir.Node) -> bool:
    source = node.inputs[0]
    target = node.inputs[1] if len(node.inputs) > 1 else None
    if source is None or target is None or target.const_value is None:
        return False
    shape = _static_dims(source.shape)
    if shape is None:
        return False
    requested = [int(d) for d in target.const_value.numpy().reshape(-1)]
    return _resolve(requested, shape, allow_zero=bool(node.attributes.get_int("allowzero", 0))) == shape


def _static_dims(shape: ir.Shape | None) -> list[int] | None:
    if shape is None or not all(isinstance(d, int) for d in shape):
        return None
    return list(shape)


def _resolve(requested: list[int], shape: list[int], allow_zero: bool) -> list[int] | None:
    """The output shape ONNX's Reshape gives ``shape`` for ``requested`` (0 copies the input's
    dimension unless allowzero, one -1 is inferred); None where it is ill-formed."""
    dims = [shape[k] if d == 0 and not allow_zero and k < len(shape) else d for k, d in enumerate(requested)]
    if dims.count(-1) > 1 or any(d < -1 for d in dims):
        return None
    if -1 in dims:
        known = 1
        for d in dims:
            known *= d if d != -1 else 1
        total = 1
        for d in shape:
            total *= d
        if known == 0 or total % known:
            return None
        dims[dims.index(-1)] = total // known
    return dims
