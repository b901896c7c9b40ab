"""Multiply-accumulate work of the MatMul, Gemm and Conv nodes, measured on one sample: the
shapes are read from an onnxruntime run, so symbolic and data-dependent dimensions are real. The
run's session takes the model's weights by reference (no copy of the model, no serialization of
its weights: that was most of the count's cost on a transformer)."""

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
    light, weights = without_weights(fp32, copy=True)  # expose_tensors edits it
    expose_tensors(light.graph, wanted)
    values = dict(zip(wanted, open_session(light, external_weights=weights).run(wanted, feed)))

    def shape(name: str) -> tuple[int, ...]:
        return inits[name] if name in inits else np.atleast_1d(values[name]).shape

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
