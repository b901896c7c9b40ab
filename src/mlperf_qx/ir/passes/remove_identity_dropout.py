"""Remove Identity nodes and inference-mode Dropout (whose mask output is unused).

Both forward their first input unchanged at inference time.
"""

from __future__ import annotations

import onnx_ir as ir

from ..graph_edit import bypass
from ..pass_base import QxPass


class RemoveIdentityAndDropout(QxPass):
    def call(self, model: ir.Model) -> ir.passes.PassResult:
        graph = model.graph
        modified = False
        for node in list(graph):
            if node.domain not in ("", "ai.onnx") or not _is_passthrough(node):
                continue
            source, result = node.inputs[0], node.outputs[0]
            if source is None or not bypass(graph, result, source):
                continue
            graph.remove(node, safe=True)
            modified = True
        return ir.passes.PassResult(model, modified)


def _is_passthrough(node: ir.Node) -> bool:
    if node.op_type == "Identity":
        return True
    if node.op_type != "Dropout":
        return False
    mask_used = len(node.outputs) > 1 and (node.outputs[1].uses() or node.outputs[1].is_graph_output())
    if mask_used:
        return False
    # opset >= 12 takes training_mode as an input; a constant False (or none) means inference.
    if len(node.inputs) > 2 and node.inputs[2] is not None:
        flag = node.inputs[2].const_value
        return flag is not None and not bool(flag.numpy())
    return True
