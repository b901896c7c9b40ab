"""How large an integer model input may be: the size of the table it indexes.

A token-id input feeds a Gather into an embedding table; numerical checks that feed it only 0
and 1 touch two rows of that table. Following each integer graph input through value-preserving
ops (Cast, Reshape, Unsqueeze, ...) to the Gathers that use it as indices gives the number of
rows every id must stay below. Inputs that index nothing (attention masks) get no bound.
"""

from __future__ import annotations

import onnx_ir as ir

from .ir.graph_edit import constant_array

_VALUE_PRESERVING = {"Cast", "Reshape", "Unsqueeze", "Squeeze", "Flatten", "Identity", "Expand", "Transpose"}


def index_bounds(model: ir.Model) -> dict[str, int]:
    """Graph input name -> exclusive upper bound for its values, for integer inputs used as
    Gather indices into a constant table."""
    bounds: dict[str, int] = {}
    for value in model.graph.inputs:
        if value.dtype not in (ir.DataType.INT64, ir.DataType.INT32):
            continue
        rows = _table_rows(value)
        if rows:
            bounds[value.name] = min(rows)
    return bounds


def _table_rows(start: ir.Value) -> list[int]:
    rows, frontier, seen = [], [start], set()
    while frontier:
        value = frontier.pop()
        if id(value) in seen:
            continue
        seen.add(id(value))
        for use in value.uses():
            node = use.node
            if node.op_type == "Gather" and use.idx == 1:
                table = constant_array(node.inputs[0])
                axis = node.attributes.get("axis")
                if table is not None and table.ndim:
                    rows.append(int(table.shape[axis.value if axis is not None else 0]))
            elif node.op_type in _VALUE_PRESERVING and use.idx == 0:
                frontier.extend(node.outputs)
    return rows
