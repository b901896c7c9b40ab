"""Compute inside If/Loop/Scan bodies (silero VAD runs its whole network inside an If): qx
quantizes the main graph only, so each GEMM-like node of a body gets an FP32 decision with that
reason, listed apart ("kept FP32 inside If"), and its work counts as FP32 in the FLOP share (see
fused_flops)."""

from __future__ import annotations

from collections.abc import Iterator

import onnx_ir as ir

from .annotate import NodeDecision

BODY_COMPUTE = frozenset({"Conv", "ConvTranspose", "MatMul", "Gemm", "LSTM", "GRU", "RNN", "Attention"})
INSIDE = "inside "  # how the reasons start, for the summary line


def _bodies(node: ir.Node) -> Iterator[tuple[str, ir.Graph]]:
    for name, attribute in node.attributes.items():
        if attribute.type == ir.AttributeType.GRAPH:
            yield name, attribute.value
        elif attribute.type == ir.AttributeType.GRAPHS:
            for index, graph in enumerate(attribute.value):
                yield f"{name}[{index}]", graph


def subgraph_decisions(graph: ir.Graph, where: str = "") -> list[NodeDecision]:
    decisions = []
    for node in graph:
        for body_name, body in _bodies(node):
            path = f"{where}{node.name}/{body_name}/"
            for inner in body:
                if inner.op_type in BODY_COMPUTE:
                    decisions.append(NodeDecision(
                        f"{path}{inner.name}", inner.op_type, False,
                        f"{INSIDE}{node.op_type} '{node.name}' ({body_name}): qx quantizes the main graph only; kept "
                        "FP32, and its multiply-adds count as FP32 in the FLOP share"))
            decisions += subgraph_decisions(body, path)
    return decisions
