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
        # Names that are fine as they are, reserved first so a renamed one never takes them.
        node_names = {n.name for n in graph if _keeps(n.name)}
        renamed: set[str] = set()
        for index, node in enumerate(graph):
            if _keeps(node.name) and node.name not in renamed:
                renamed.add(node.name)
                continue
            base = _COUNTER_NAME.sub("", node.name) if node.name else f"{node.op_type}_{index}"
            node.name = _fresh(base or f"{node.op_type}_{index}", node_names | renamed)
            renamed.add(node.name)
            modified = True
        value_names = {v.name for v in graph.inputs} | set(graph.initializers)
        value_names |= {v.name for n in graph for v in n.outputs if _keeps(v.name) and not v.is_graph_output()}
        seen: set[str] = set()
        for node in graph:
            for position, value in enumerate(node.outputs):
                if value.is_graph_output() or (_keeps(value.name) and value.name not in seen):
                    seen.add(value.name)
                    continue
                base = _COUNTER_NAME.sub("", value.name) if value.name else f"{node.name}_output_{position}"
                value.name = _fresh(base or f"{node.name}_output_{position}", value_names | seen)
                seen.add(value.name)
                modified = True
        modified |= _rename_counter_initializers(graph, value_names | seen)
        return ir.passes.PassResult(model, modified)


def _keeps(name: str | None) -> bool:
    return bool(name) and not _COUNTER_NAME.search(name)


_COUNTER_NAME = re.compile(r"__\d+(?=$|_|:)")


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
