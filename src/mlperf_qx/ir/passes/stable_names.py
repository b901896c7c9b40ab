"""Give every node and value a unique, non-empty name derived only from the graph itself.

Exporters leave some names empty or repeated; runtimes and the quantizer key on names, and
deterministic names keep the output bytes identical across runs. Existing unique names are kept
(they carry the framework's layer names, which people read).
"""

from __future__ import annotations

import onnx_ir as ir

from ..pass_base import QxPass


class StableNames(QxPass):
    def call(self, model: ir.Model) -> ir.passes.PassResult:
        graph = model.graph
        modified = False
        node_names: set[str] = set()
        for index, node in enumerate(graph):
            if not node.name or node.name in node_names:
                node.name = _fresh(f"{node.op_type}_{index}", node_names)
                modified = True
            node_names.add(node.name)
        value_names = {v.name for v in graph.inputs} | set(graph.initializers)
        for node in graph:
            for position, value in enumerate(node.outputs):
                if not value.name or value.name in value_names:
                    value.name = _fresh(f"{node.name}_output_{position}", value_names)
                    modified = True
                value_names.add(value.name)
        return ir.passes.PassResult(model, modified)


def _fresh(base: str, taken: set[str]) -> str:
    name, suffix = base, 1
    while name in taken:
        name = f"{base}_{suffix}"
        suffix += 1
    return name
