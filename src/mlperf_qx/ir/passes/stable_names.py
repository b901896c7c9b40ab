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

from ..graph_edit import claim_fresh_name
from ..pass_base import QxPass


class StableNames(QxPass):
    def call(self, model: ir.Model) -> ir.passes.PassResult:
        graph = model.graph
        modified = False
        nodes = _Names(n.name for n in graph if _keeps(n.name))
        for index, node in enumerate(graph):
            name = nodes.settle(node.name, f"{node.op_type}_{index}")
            modified |= name != node.name
            node.name = name
        values = _Names([*(v.name for v in graph.inputs), *graph.initializers, *(v.name for v in graph.outputs),
                         *(v.name for n in graph for v in n.outputs if _keeps(v.name))])
        for node in graph:
            for position, value in enumerate(node.outputs):
                name = values.settle(value.name, f"{node.name}_output_{position}", keep=value.is_graph_output())
                modified |= name != value.name
                value.name = name
        modified |= _rename_counter_initializers(graph, values.taken)
        return ir.passes.PassResult(model, modified)


_COUNTER_NAME = re.compile(r"__\d+(?=$|_|:)")


def _keeps(name: str | None) -> bool:
    return bool(name) and not _COUNTER_NAME.search(name)


class _Names:
    """Hands out names in graph order. Names that are fine as they are (non-empty, no counter)
    are reserved up front, so a name made for another node or value never takes one of them;
    the first holder of a fine name keeps it, later holders and counter names get fresh ones."""

    def __init__(self, reserved) -> None:
        self.taken: set[str] = set(reserved)
        self.claimed: set[str] = set()

    def settle(self, name: str | None, fallback: str, keep: bool = False) -> str:
        if keep or (_keeps(name) and name not in self.claimed):
            self.taken.add(name)
        else:
            name = claim_fresh_name((_COUNTER_NAME.sub("", name) if name else "") or fallback, self.taken)
        self.claimed.add(name)
        return name


def _rename_counter_initializers(graph: ir.Graph, taken: set[str]) -> bool:
    renames, seen = [], set()
    for node in graph:
        for index, value in enumerate(node.inputs):
            if (value is not None and id(value) not in seen and value.name in graph.initializers
                    and not value.is_graph_input() and _COUNTER_NAME.search(value.name)):
                seen.add(id(value))
                renames.append((value, f"{node.name}_input_{index}"))
    for value, base in renames:
        del graph.initializers[value.name]
        value.name = claim_fresh_name(base, taken)
        graph.register_initializer(value)
    return bool(renames)
