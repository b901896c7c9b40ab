"""Annotate every intermediate value with its dtype and shape (ONNX shape inference).

Initializer data is not needed for inference; onnx_ir's ShapeInferencePass leaves large
initializers out of the proto it hands to ONNX, so this also works past the 2 GB protobuf limit.
"""

from __future__ import annotations

import logging

import onnx_ir as ir
import onnx_ir.passes.common as common

from ..pass_base import QxPass


class InferShapes(QxPass):
    def call(self, model: ir.Model) -> ir.passes.PassResult:
        before = _signature(model)
        order = list(model.graph.initializers)
        # Where ONNX cannot infer a shape the model is left as it is; onnx_ir logs that with a
        # traceback, which must not reach the user's terminal.
        logger = logging.getLogger("onnx_ir.passes.common.shape_inference")
        level = logger.level
        logger.setLevel(logging.ERROR)
        try:
            result = common.ShapeInferencePass()(model)
        finally:
            logger.setLevel(level)
        _restore_initializer_order(result.model.graph, order)
        return ir.passes.PassResult(result.model, _signature(result.model) != before)


def _restore_initializer_order(graph: ir.Graph, order: list[str]) -> None:
    """onnx_ir's pass hands ONNX a proto without the large initializers and puts them back after
    the others, so each run moves them: a second canonicalization of a canonical model would give
    other bytes. Keep the order the model had."""
    if list(graph.initializers) == [n for n in order if n in graph.initializers]:
        return
    ranked = {name: k for k, name in enumerate(order)}
    values = sorted(graph.initializers.values(), key=lambda v: ranked.get(v.name, len(ranked)))
    for value in values:
        del graph.initializers[value.name]
    for value in values:
        graph.register_initializer(value)


def _signature(model: ir.Model) -> list[tuple]:
    return [
        (v.name, str(v.type), str(v.shape))
        for node in model.graph
        for v in node.outputs
    ]
