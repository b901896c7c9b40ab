"""Statistics read where their tensor was written: the order in which the calibration graph's added
nodes are appended steers when onnxruntime runs them.

onnxruntime's default execution order is a depth-first walk up from the graph's leaf nodes (nodes
whose outputs nothing consumes), the highest-indexed leaf first: each leaf runs as soon as
everything above it has. Leaves appended in reverse graph order (the last-written tensor's first)
therefore run each right after the operator that wrote its tensor, while the tensor is still in
cache, and the tensor's buffer can be reused at once. Appended in any other order (the tensors'
names), most of them ran after whole stages of the network, reading their tensors back from
memory; the reorders from onnxruntime's blocked NCHWc layout that exposed tensors need ran last
of all, keeping every blocked tensor allocated until then (ResNet-50's calibration pass: see
``benchmarks/bench_calibration.py``). Only the order changes: every value computed is the same.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper


def last_written_first(graph: onnx.GraphProto, tensors: list[str]) -> list[int]:
    """Indices into ``tensors``, the tensor written by the latest node (in the graph's topological
    node order) first; graph inputs and initializers last, ties in ``tensors`` order."""
    written_at = {}
    for position, node in enumerate(graph.node):
        for output in node.output:
            written_at.setdefault(output, position)
    return sorted(range(len(tensors)), key=lambda i: -written_at.get(tensors[i], -1))


def read_where_written(graph: onnx.GraphProto, exposed: list[str], opset: int) -> None:
    """Makes onnxruntime produce each exposed graph output right after its tensor is written.

    A graph output is no node's input, so what onnxruntime adds to produce one (the reorder out of
    its blocked layout) is a leaf of its own, indexed in whatever order onnxruntime created it. A
    leaf we index, appended last-written first, reads each exposed tensor: its first element
    (flattened, then sliced), so it costs nothing, and the walk up from it places the tensor's
    reorder right after its writer. Not a ``Shape``: onnxruntime folds that into a constant where
    the shape is static, and the leaf is gone. ``opset``: the graph's ai.onnx version; below 10,
    where Slice took its bounds as attributes, nothing is added (quantize refuses such models)."""
    if not exposed or opset < 10:
        return
    flat, first, one = "qx_order::flat", "qx_order::first", "qx_order::one"
    graph.initializer.extend([numpy_helper.from_array(np.array([-1], np.int64), flat),
                              numpy_helper.from_array(np.array([0], np.int64), first),
                              numpy_helper.from_array(np.array([1], np.int64), one)])
    for index in last_written_first(graph, exposed):
        tensor, name = exposed[index], f"qx_order::{index}"
        graph.node.extend([helper.make_node("Reshape", [tensor, flat], [f"{name}::flat"], name=f"{name}::flat_node"),
                           helper.make_node("Slice", [f"{name}::flat", first, one], [name], name=f"{name}_node")])
