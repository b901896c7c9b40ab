"""Small editing helpers shared by passes."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir


def constant_array(value: ir.Value | None) -> np.ndarray | None:
    """The value's constant data if it is an initializer (not overridable as a graph input)."""
    if value is None or value.const_value is None or value.is_graph_input():
        return None
    return value.const_value.numpy()


def new_initializer(graph: ir.Graph, name: str, array: np.ndarray) -> ir.Value:
    """Register ``array`` as an initializer under a name not yet used in the graph."""
    return add_initializer(graph, unique_value_name(graph, name), array)


def add_initializer(graph: ir.Graph, unique: str, array: np.ndarray) -> ir.Value:
    """Register ``array`` as an initializer named ``unique``, which the caller knows is free (a pass
    adding hundreds keeps the names in a set instead of scanning the graph for each)."""
    value = ir.Value(
        name=unique,
        shape=ir.Shape(array.shape),
        type=ir.TensorType(ir.DataType.from_numpy(array.dtype)),
        const_value=ir.tensor(array, name=unique),
    )
    graph.register_initializer(value)
    return value


def claim_fresh_name(base: str, taken: set[str]) -> str:
    """``base``, or ``base_1``, ``base_2``… : the first not in ``taken``, which is added to it."""
    name, suffix = base, 1
    while name in taken:
        name = f"{base}_{suffix}"
        suffix += 1
    taken.add(name)
    return name


def unique_value_name(graph: ir.Graph, base: str) -> str:
    candidate, index = base, 0
    while _name_taken(graph, candidate):
        index += 1
        candidate = f"{base}_{index}"
    return candidate


def _name_taken(graph: ir.Graph, name: str) -> bool:
    # A scan per query, no set built: passes add hundreds of initializers to graphs of thousands
    # of values, and the names they ask for are almost always free.
    if name in graph.initializers or any(v.name == name for v in graph.inputs):
        return True
    return any(v.name == name for node in graph for v in node.outputs)


def bypass(graph: ir.Graph, old: ir.Value, replacement: ir.Value) -> bool:
    """Make every use of ``old`` read ``replacement`` instead; False when that is not possible.

    A graph output keeps its public name: the replacement is renamed to it, which is only allowed
    when the replacement is a plain intermediate value.
    """
    if old.is_graph_output():
        if replacement.is_graph_input() or replacement.is_graph_output() or replacement.is_initializer():
            return False
        name = old.name
        old.name = None
        replacement.name = name
        replacement.shape = replacement.shape or old.shape
        replacement.type = replacement.type or old.type
    old.replace_all_uses_with(replacement, replace_graph_outputs=True)
    return True
