"""Give every node and value a unique, non-empty name derived only from the graph itself.

Exporters leave some names empty or repeated; runtimes and the quantizer key on names, and
deterministic names keep the output bytes identical across runs. Existing unique names are kept
(they carry the framework's layer names, which people read), except initializer names made from
a process-wide counter (tf2onnx's ``const_fold_opt__24``): the counter's value depends on what
ran before in the process and on set iteration order, so the same model exports under different
names. Those are renamed after their first reader, which is stable.
"""

from __future__ import annotations

import re

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
        modified |= _rename_counter_initializers(graph, value_names)
        return ir.passes.PassResult(model, modified)


_COUNTER_NAME = re.compile(r"__\d+(?=$|_)")


def _rename_counter_initializers(graph: ir.Graph, taken: set[str]) -> bool:
    modified = False
    renames = []
    for node in graph:
        for index, value in enumerate(node.inputs):
            if (value is not None and value.name in graph.initializers and not value.is_graph_input()
                    and _COUNTER_NAME.search(value.name) and all(value is not v for v, _ in renames)):
                renames.append((value, f"{node.name}_input_{index}"))
    for value, base in renames:
        del graph.initializers[value.name]
        value.name = _fresh(base, taken)
        taken.add(value.name)
        graph.register_initializer(value)
        modified = True
    return modified


def _fresh(base: str, taken: set[str]) -> str:
    name, suffix = base, 1
    while name in taken:
        name = f"{base}_{suffix}"
        suffix += 1
    return name
