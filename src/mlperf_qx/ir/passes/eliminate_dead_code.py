"""Remove nodes whose outputs nobody reads, and initializers nobody uses.

Graph inputs are the model's interface and are kept even when unused.
"""

from __future__ import annotations

import onnx_ir as ir

from ..pass_base import QxPass


class EliminateDeadCode(QxPass):
    def call(self, model: ir.Model) -> ir.passes.PassResult:
        graph = model.graph
        modified = False
        for node in reversed(list(graph)):
            if any(v.uses() or v.is_graph_output() for v in node.outputs):
                continue
            graph.remove(node, safe=True)
            modified = True
        for name, value in list(graph.initializers.items()):
            if not value.uses() and not value.is_graph_input() and not value.is_graph_output():
                del graph.initializers[name]
                modified = True
        return ir.passes.PassResult(model, modified)
