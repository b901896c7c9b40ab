"""Multiply-accumulate work of the MatMul, Gemm and Conv nodes, measured on one sample. The shapes
are the model's declared ones (shape inference ran in canonicalization) where every dimension is
a number or a symbol the sample's inputs fix ('batch' = the feed's batch); else those of onnx's shape
inference on a weightless copy (nodes added after canonicalization, as equalization's outlier
Gathers, carry no declared shape); else, for symbolic and data-dependent dimensions, they are read
from an onnxruntime run. That run's session takes the
model's weights by reference (no copy of the model, no serialization of its weights)."""

from __future__ import annotations

import numpy as np
import onnx

from ..runtime import open_session
from ..session_weights import without_weights
from .runtime_check import expose_tensors

FLOP_OPS = ("MatMul", "Gemm", "Conv")


def matmul_flops(fp32: onnx.ModelProto, feed: dict[str, np.ndarray]) -> dict[str, float]:
    """node name -> FLOPs (2 per multiply-add) of each MatMul/Gemm/Conv on ``feed``."""
    nodes = [n for n in fp32.graph.node if n.op_type in FLOP_OPS and n.domain in ("", "ai.onnx")]
    if not nodes:
        return {}
    inits = {t.name: tuple(t.dims) for t in fp32.graph.initializer}
    wanted = sorted({n.output[0] for n in nodes} | {n.input[k] for n in nodes for k in (0, 1) if n.input[k] not in inits})
    shapes = declared_shapes(fp32.graph, feed, wanted)
    if shapes is None:  # WHY inference before a run: on mpnet 0.3 s of CPU against 1.3 s for the run's session
        shapes = declared_shapes(onnx.shape_inference.infer_shapes(without_weights(fp32, copy=True)[0]).graph,
                                 feed, wanted)
    if shapes is None:
        shapes = shapes_by_run(fp32, feed, wanted)

    def shape(name: str) -> tuple[int, ...]:
        return inits[name] if name in inits else shapes[name]

    flops = {}
    for node in nodes:
        out = int(np.prod(shape(node.output[0])))
        if node.op_type == "Conv":
            weight = shape(node.input[1])
            depth = int(np.prod(weight[1:]))
        elif node.op_type == "Gemm":
            trans_a = any(a.name == "transA" and a.i for a in node.attribute)
            a = shape(node.input[0])
            depth = a[0] if trans_a else a[-1]
        else:
            depth = shape(node.input[0])[-1]
        flops[node.name] = 2.0 * out * depth
    return flops


def declared_shapes(graph: onnx.GraphProto, feed: dict[str, np.ndarray], names: list[str]
                    ) -> dict[str, tuple[int, ...]] | None:
    """Each named value's shape on ``feed`` from the graph's declared shapes, a symbol taking the
    size the feed gives it in a graph input; None when any dimension is unknown, a symbol no input
    fixes, or the feed disagrees with a declared input (then only a run can tell)."""
    sizes: dict[str, int] = {}
    for value in graph.input:
        if value.name not in feed:
            continue
        actual = np.shape(feed[value.name])
        dims = value.type.tensor_type.shape.dim
        if not value.type.tensor_type.HasField("shape") or len(dims) != len(actual):
            return None
        for dim, size in zip(dims, actual):
            if dim.HasField("dim_value") and dim.dim_value != size:
                return None
            if dim.HasField("dim_param") and sizes.setdefault(dim.dim_param, size) != size:
                return None
    declared = {v.name: v for v in (*graph.input, *graph.value_info, *graph.output)}
    shapes = {}
    for name in names:
        value = declared.get(name)
        if value is None or not value.type.tensor_type.HasField("shape"):
            return None
        shape = []
        for dim in value.type.tensor_type.shape.dim:
            if dim.HasField("dim_value") and dim.dim_value > 0:
                shape.append(dim.dim_value)
            elif dim.HasField("dim_param") and dim.dim_param in sizes:
                shape.append(sizes[dim.dim_param])
            else:
                return None
        shapes[name] = tuple(shape) or (1,)  # as np.atleast_1d gives a run's scalar
    return shapes


def shapes_by_run(fp32: onnx.ModelProto, feed: dict[str, np.ndarray], names: list[str]) -> dict[str, tuple[int, ...]]:
    """Each named value's shape in an onnxruntime run of ``fp32`` on ``feed``."""
    light, weights = without_weights(fp32, copy=True)  # expose_tensors edits it
    expose_tensors(light.graph, names)
    values = open_session(light, external_weights=weights).run(names, feed)
    return {name: np.atleast_1d(value).shape for name, value in zip(names, values)}
