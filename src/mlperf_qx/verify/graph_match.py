"""Structural comparison of a quantized candidate with its FP32 reference.

Q/DQ nodes are transparent, and QOperator nodes map back to the float op they implement (read
from the OpSpec table, the same one the lowering uses), so the candidate's compute graph can be
compared node for node (op, attributes, edges) with the reference's. The result aligns each
reference node with its candidate twin."""

from __future__ import annotations

from dataclasses import dataclass, field

import onnx
import numpy as np
from onnx import numpy_helper

from ..quant.op_specs import INTEGER_MATMUL, QOPERATOR_FORMS, is_int8_passthrough

TRANSPARENT = {"QuantizeLinear", "DequantizeLinear"}
# QOperator op -> (float op, positions of the float op's inputs among its inputs)
QOPERATOR = {op: (spec.op_type, spec.qoperator.float_positions()) for op, spec in QOPERATOR_FORMS.items()}
QOPERATOR[INTEGER_MATMUL[1]] = ("MatMul", (0, 1))


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
    consumers: dict[str, list[onnx.NodeProto]] = field(default_factory=dict)


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
        if _is_uint8_relu(node, initializers):
            op_type, raw = "Relu", [node.input[0]]
        while raw and raw[-1] == "":
            raw.pop()
        edges = [source(name) if name else ("none",) for name in raw]
        attributes = _attributes(node)
        nodes.append(ComputeNode(node, op_type, attributes, edges, raw))
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    return GraphView(nodes, initializers, producers, consumers)


def _is_uint8_relu(node: onnx.NodeProto, initializers: dict[str, onnx.TensorProto]) -> bool:
    """Max(u, uint8 128) is Relu on the symmetric grid stored as uint8 (zero point 128, see
    quant/uint8_activations): max(q, 0) is max(u, 128). qx writes no other uint8 constant."""
    if node.op_type != "Max" or len(node.input) != 2:
        return False
    low = initializers.get(node.input[1])
    return low is not None and low.data_type == onnx.TensorProto.UINT8 and numpy_helper.to_array(low).size == 1 \
        and int(numpy_helper.to_array(low).reshape(-1)[0]) == 128


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


def tensor_scale(view: GraphView, name: str) -> np.float32 | None:
    """The scale of an int8 or int32 tensor of a quantized model: from the QuantizeLinear or
    QOperator node that wrote it (through exact int8 pass-through ops), or, for an int32
    accumulator, from the DequantizeLinear that reads it. None when it cannot be told."""
    seen = 0
    while seen < 1000:  # pass-through chains are short; a cycle would be a malformed model
        seen += 1
        node = view.producers.get(name)
        if node is None:
            break
        if node.op_type == "QuantizeLinear":
            return _scalar(view, node.input[1])
        spec = QOPERATOR_FORMS.get(node.op_type)
        if spec is not None:
            return _scalar(view, node.input[spec.qoperator.output_scale])
        if not is_int8_passthrough(node.op_type) and not _is_uint8_relu(node, view.initializers):
            break
        name = node.input[0]
    for reader in view.consumers.get(name, []):
        if reader.op_type == "DequantizeLinear" and reader.input[0] == name:
            return _scalar(view, reader.input[1])
    return None


def _scalar(view: GraphView, name: str) -> np.float32 | None:
    array = constant_array(view, name)
    return None if array is None or array.size != 1 else np.float32(array.reshape(-1)[0])
