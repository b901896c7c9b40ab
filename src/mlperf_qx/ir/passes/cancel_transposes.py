"""Cancel or merge chains of Transpose nodes.

tf2onnx wraps each NHWC convolution in Transpose(NHWC->NCHW) ... Transpose(NCHW->NHWC); between
two such convolutions the pair meets back to back. Two Transposes in a row compose into one
permutation: the identity is removed outright, anything else becomes a single Transpose.
Pure data movement, so numerics are exactly unchanged.
"""

from __future__ import annotations

import onnx_ir as ir

from ..graph_edit import bypass
from ..pass_base import QxPass


class CancelTransposes(QxPass):
    def call(self, model: ir.Model) -> ir.passes.PassResult:
        graph = model.graph
        modified = False
        changed = True
        while changed:  # a chain of n transposes needs up to n - 1 rounds
            changed = False
            for node in list(graph):
                if node.graph is graph and _is_transpose(node) and self._rewrite(graph, node):
                    changed = modified = True
        return ir.passes.PassResult(model, modified)

    def _rewrite(self, graph: ir.Graph, second: ir.Node) -> bool:
        first = second.inputs[0].producer() if second.inputs[0] is not None else None
        if first is None or not _is_transpose(first):
            return False
        outer, inner = _perm(second), _perm(first)
        if outer is None or inner is None or len(outer) != len(inner):
            return False
        # y = transpose(transpose(x, inner), outer): y axis i reads x axis inner[outer[i]].
        combined = [inner[axis] for axis in outer]
        source = first.inputs[0]
        if combined == list(range(len(combined))):
            if not bypass(graph, second.outputs[0], source):
                return False
            graph.remove(second, safe=True)
        else:
            second.replace_input_with(0, source)
            second.attributes["perm"] = ir.AttrInt64s("perm", combined)
        if not first.outputs[0].uses() and not first.outputs[0].is_graph_output():
            graph.remove(first, safe=True)
        return True


def _is_transpose(node: ir.Node) -> bool:
    return node.op_type == "Transpose" and node.domain in ("", "ai.onnx")


def _perm(node: ir.Node) -> list[int] | None:
    attr = node.attributes.get("perm")
    if attr is not None:
        return list(attr.value)
    value = node.inputs[0]
    if value is None or value.shape is None:
        return None  # the default perm (reverse) needs the rank
    return list(range(len(value.shape)))[::-1]
