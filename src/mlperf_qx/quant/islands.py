"""Activation functions written as elementwise ops, recognised and planned as one unit.

Exporters often write an activation as a chain of elementwise ops rather than one node: torch's
dynamo exporter writes GELU as ``Div -> Erf -> Add -> Mul -> Mul``, SiLU as ``Sigmoid -> Mul``,
HardSwish as ``Add -> Clip -> Div -> Mul`` (or ``HardSigmoid -> Mul``). Quantizing the Add and
Mul inside such an island puts int8 rounding between the steps of one smooth function (measured
on a transformers ConvNeXt: 6.6-11.7 dB per layer, below verify's layer tolerance) and saves no
GEMM. So the island is one unit: its inner ops stay FP32, and only its input and its output are
quantized, where their producer and readers are int8.

An island is found from its input ``x``: the elementwise ops reachable from ``x`` whose other
operands are scalar constants or values of the island itself. It is an activation when ``x`` is
read by at least two of them (the function gates ``x`` by something computed from ``x``), it
contains a nonlinear op, and exactly one of its values leaves it.
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx_ir as ir

from ..ir.graph_edit import constant_array

ELEMENTWISE = frozenset({"Add", "Sub", "Mul", "Div", "Pow", "Erf", "Tanh", "Sigmoid", "HardSigmoid", "Clip",
                         "Relu", "Min", "Max"})
NONLINEAR = frozenset({"Erf", "Tanh", "Sigmoid", "HardSigmoid", "Clip", "Relu", "Min", "Max"})


@dataclass(frozen=True)
class Island:
    kind: str  # "GELU (erf)", "GELU (tanh)", "SiLU", "HardSwish"
    input: str
    output: str
    nodes: tuple[str, ...]  # in graph order
    op_chain: str  # e.g. "Div -> Erf -> Add -> Mul -> Mul"

    def reason(self) -> str:
        # Not "inside ...": that start marks ops inside If/Loop bodies (subgraph_nodes.INSIDE).
        return (f"part of a {self.kind} island ({self.op_chain}) from '{self.input}' to '{self.output}': planned "
                "as one activation; int8 between its steps adds error and saves no GEMM, so only its input and "
                "output are quantized; kept FP32")


def find_islands(graph: ir.Graph) -> list[Island]:
    """Every activation island of the graph, in graph order, no node in two islands."""
    order = {id(node): k for k, node in enumerate(graph)}
    taken: set[int] = set()
    islands = []
    for value in _candidate_inputs(graph):
        members = _closure(value, order)
        island = _as_island(value, members, order)
        if island is not None and not any(id(n) in taken for n in members):
            taken.update(id(n) for n in members)
            islands.append((order[id(members[0])], island))
    return [island for _, island in sorted(islands, key=lambda pair: pair[0])]


def island_fp32_reasons(graph: ir.Graph) -> dict[str, str]:
    """node name -> why it stays FP32, for every node inside an island."""
    return {name: island.reason() for island in find_islands(graph) for name in island.nodes}


def _candidate_inputs(graph: ir.Graph) -> list[ir.Value]:
    """Values read by two or more elementwise ops (graph inputs and node outputs), in graph order."""
    values = [*graph.inputs, *(v for node in graph for v in node.outputs)]
    return [v for v in values if v.dtype in (ir.DataType.FLOAT, None)
            and sum(use.node.op_type in ELEMENTWISE for use in v.uses()) >= 2]


def _closure(x: ir.Value, order: dict[int, int]) -> list[ir.Node]:
    """The elementwise nodes computed from ``x`` alone (and scalar constants), in graph order."""
    inside: dict[int, ir.Node] = {}
    values = {id(x)}
    frontier = [use.node for use in x.uses()]
    while frontier:
        node = frontier.pop()
        if id(node) in inside or not _belongs(node, values):
            continue
        inside[id(node)] = node
        values.update(id(v) for v in node.outputs)
        frontier.extend(use.node for v in node.outputs for use in v.uses())
    return sorted(inside.values(), key=lambda n: order[id(n)])


def _belongs(node: ir.Node, values: set[int]) -> bool:
    if node.op_type not in ELEMENTWISE or node.domain not in ("", "ai.onnx") or len(node.outputs) != 1:
        return False
    for operand in node.inputs:
        if operand is None or id(operand) in values:
            continue
        constant = constant_array(operand)
        if constant is None or constant.size != 1:
            return False
    return True


def _as_island(x: ir.Value, members: list[ir.Node], order: dict[int, int]) -> Island | None:
    member_ids = {id(n) for n in members}
    readers = [use.node for use in x.uses() if id(use.node) in member_ids]
    op_types = {n.op_type for n in members}
    if len(readers) < 2 or not op_types & NONLINEAR:
        return None
    leaving = [n for n in members if n.outputs[0].is_graph_output()
               or any(id(use.node) not in member_ids for use in n.outputs[0].uses())]
    if len(leaving) != 1 or leaving[0] is not members[-1]:
        return None
    kind = _kind(op_types)
    if kind is None:
        return None
    return Island(kind, x.name, leaving[0].outputs[0].name, tuple(n.name for n in members),
                  " -> ".join(n.op_type for n in members))


def _kind(op_types: set[str]) -> str | None:
    if "Erf" in op_types:
        return "GELU (erf)"
    if "Tanh" in op_types:
        return "GELU (tanh)"
    if "Sigmoid" in op_types and "Mul" in op_types:
        return "SiLU"
    if op_types & {"HardSigmoid", "Clip", "Relu", "Min", "Max"} and "Mul" in op_types:
        return "HardSwish"
    return None
