"""Annotate every intermediate value with its dtype and shape (ONNX shape inference).

Initializer data is not needed for inference; onnx_ir's helper leaves large initializers out of
the proto it hands to ONNX, so this also works past the 2 GB protobuf limit.

The inferred types are merged whole, not as a dtype: onnx_ir's own ShapeInferencePass copies only
the element type, which turns a ``Sequence(Tensor(FLOAT))`` loop-carried value (torch's dynamo
exporter writes one for EmbeddingBag) into a plain FLOAT tensor, and onnxruntime then refuses the
Loop ("Type mismatch. Current=1 Input=4").
"""

from __future__ import annotations

import onnx
import onnx_ir as ir
from onnx_ir.passes.common import _c_api_utils

from ..pass_base import QxPass


class InferShapes(QxPass):
    def call(self, model: ir.Model) -> ir.passes.PassResult:
        before = _signature(model)
        order = list(model.graph.initializers)
        try:
            inferred = _c_api_utils.call_onnx_api(_infer, model)
        except Exception:  # noqa: BLE001 - where ONNX cannot infer, the model is left as it is
            _restore_initializer_order(model.graph, order)
            return ir.passes.PassResult(model, False)
        _restore_initializer_order(model.graph, order)
        _merge(model, ir.serde.deserialize_model(inferred))
        return ir.passes.PassResult(model, _signature(model) != before)


def _infer(proto: onnx.ModelProto) -> onnx.ModelProto:
    return onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True, data_prop=True)


def _merge(model: ir.Model, inferred: ir.Model) -> None:
    for graph, inferred_graph in zip(model.graphs(), inferred.graphs()):
        found = ir.convenience.create_value_mapping(inferred_graph)
        for name, value in ir.convenience.create_value_mapping(graph).items():
            other = found.get(name)
            if other is None:
                continue
            if other.shape is not None and value.shape != other.shape:
                value.shape = other.shape
            if other.type is not None and value.type != other.type:
                value.type = other.type


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
