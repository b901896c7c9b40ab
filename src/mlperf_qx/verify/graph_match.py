"""Structural comparison of a quantized candidate with its FP32 reference.

Q/DQ nodes are transparent, and QOperator nodes map back to the float op they implement, so the
candidate's compute graph can be compared node for node (op, attributes, edges) with the
reference's. The result aligns each reference node with its candidate twin."""

from __future__ import annotations

from dataclasses import dataclass, field

import onnx
from onnx import numpy_helper

TRANSPARENT = {"QuantizeLinear", "DequantizeLinear"}
# QOperator op -> (float op, positions of the float op's inputs among its inputs)
QOPERATOR = {
    "QLinearConv": ("Conv", (0, 3, 8)),
    "QLinearMatMul": ("MatMul", (0, 3)),
    "QLinearAdd": ("Add", (0, 3)),
    "QLinearMul": ("Mul", (0, 3)),
}


@dataclass
class ComputeNode:
    node: onnx.NodeProto
    op_type: str
    attributes: tuple
    inputs: list[tuple]  # edge signatures
    input_values: list[str | None]  # the candidate's raw input names at the float op's positions


@dataclass
class GraphView:
    nodes: list[ComputeNode]
    initializers: dict[str, onnx.TensorProto]
    producers: dict[str, onnx.NodeProto] = field(default_factory=dict)


def _attributes(node: onnx.NodeProto) -> tuple:
    return tuple(sorted((a.name, str(onnx.helper.get_attribute_value(a))) for a in node.attribute))


def compute_view(model: onnx.ModelProto) -> GraphView:
    graph = model.graph
    initializers = {t.name: t for t in graph.initializer}
    producers = {o: n for n in graph.node for o in n.output}
    compute = [n for n in graph.node if n.op_type not in TRANSPARENT]
    position = {id(n): k for k, n in enumerate(compute)}
    graph_inputs = {i.name for i in graph.input}

    def source(name: str) -> tuple:
        while name in producers and producers[name].op_type in TRANSPARENT:
            name = producers[name].input[0]
        if name in producers:
            node = producers[name]
            return ("node", position[id(node)], list(node.output).index(name))
        if name in initializers:
            return ("const", tuple(initializers[name].dims))
        if name in graph_inputs:
            return ("input", name)
        return ("missing", name)

    nodes = []
    for node in compute:
        op_type, positions = QOPERATOR.get(node.op_type, (node.op_type, None))
        raw = list(node.input) if positions is None else [node.input[i] if i < len(node.input) else "" for i in positions]
        while raw and raw[-1] == "":
            raw.pop()
        edges = [source(name) if name else ("none",) for name in raw]
        attributes = _attributes(node)
        nodes.append(ComputeNode(node, op_type, attributes, edges, raw))
    return GraphView(nodes, initializers, producers)


@dataclass
class MatchResult:
    equal: bool
    detail: str
    pairs: list[tuple[ComputeNode, ComputeNode]]


def match_graphs(reference: GraphView, candidate: GraphView) -> MatchResult:
    pairs = list(zip(reference.nodes, candidate.nodes))
    for k, (ref, cand) in enumerate(pairs):
        if ref.op_type != cand.op_type:
            return MatchResult(False, f"node {k}: reference {ref.op_type} '{ref.node.name}', candidate "
                                      f"{cand.op_type} '{cand.node.name}'", pairs[:k])
        if ref.attributes != cand.attributes:
            return MatchResult(False, f"node {k} ({ref.op_type} '{ref.node.name}'): attributes differ", pairs[:k])
        if ref.inputs != cand.inputs:
            return MatchResult(False, f"node {k} ({ref.op_type} '{ref.node.name}'): inputs wired differently "
                                      f"({ref.inputs} vs {cand.inputs})", pairs[:k])
    if len(reference.nodes) != len(candidate.nodes):
        longer, who = (candidate, "candidate") if len(candidate.nodes) > len(reference.nodes) else (reference, "reference")
        extra = longer.nodes[len(pairs)]
        return MatchResult(False, f"{who} has {abs(len(candidate.nodes) - len(reference.nodes))} more node(s), first "
                                  f"{extra.op_type} '{extra.node.name}'", pairs)
    return MatchResult(True, f"{len(pairs)} compute nodes match", pairs)


def constant_array(view: GraphView, name: str):
    tensor = view.initializers.get(name)
    return None if tensor is None else numpy_helper.to_array(tensor)
