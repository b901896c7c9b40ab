"""The calibration graph serialized without its weights, which go to onnxruntime by reference.

The calibration session is built from the model in memory (with its observation nodes added), so
its weights would be copied into protobuf, serialized to bytes and parsed back by onnxruntime:
for ResNet-50's 100 MB about 0.9 s of a 1.5 s session (measured here, under load), a fixed cost
the FP32 floor, opened from its file, does not pay. Instead each large initializer is written as
an external-data reference and handed to onnxruntime as an OrtValue
(``SessionOptions.add_external_initializers``); onnxruntime puts the values in place before it
optimizes the graph, so the session computes exactly what the serialized model computes.

``runtime.open_session`` does the same for any proto it is given (``session_weights``); this
module goes one step further for the calibration graph, built from an onnx_ir model: the weights
never enter protobuf at all. The rules for what stays inline are ``session_weights``'s.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import onnx
import onnx_ir as ir

from ..session_weights import BY_REFERENCE_TYPES, IN_MEMORY_LOCATION as LOCATION, MIN_BYTES

_BY_REFERENCE = frozenset(ir.DataType(t) for t in BY_REFERENCE_TYPES)


def serialize_without_weights(model: ir.Model) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """The model as a proto whose large main-graph initializers are references, and their values."""
    with _weights_as_references(model) as weights:
        return ir.serde.serialize_model(model), weights


@contextlib.contextmanager
def _weights_as_references(model: ir.Model) -> Iterator[dict[str, np.ndarray]]:
    """Swaps each large initializer's value for a reference while the model is serialized, then
    puts every value back (the model is the caller's and must come out unchanged)."""
    swapped: dict[str, ir.TensorProtocol] = {}
    weights: dict[str, np.ndarray] = {}
    try:
        for name, value in model.graph.initializers.items():
            tensor = value.const_value
            if tensor is None or tensor.dtype not in _BY_REFERENCE or tensor.nbytes < MIN_BYTES:
                continue
            if not value.uses() and not value.is_graph_output():
                # onnxruntime drops an unread initializer while it loads the graph, and then
                # refuses a reference to it (equalization leaves the replaced weight unread).
                continue
            array = np.ascontiguousarray(tensor.numpy())
            swapped[name], weights[name] = tensor, array
            value.const_value = ir.ExternalTensor(LOCATION, 0, array.nbytes, tensor.dtype, shape=tensor.shape,
                                                  name=name)
        yield weights
    finally:
        for name, tensor in swapped.items():
            model.graph.initializers[name].const_value = tensor
