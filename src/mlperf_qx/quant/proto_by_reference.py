"""Large initializers of a graph built in memory, handed to onnxruntime by reference.

The switchboard's segments and the FLOP count open sessions on graphs built from the FP32 model
in memory; copying their weights into protobuf, serializing them and parsing them back (MiniLM's
47 MB embedding table; the whole 90 MB model for the FLOP count) was most of each session's cost.
As in ``weights_by_reference`` (the same for an onnx_ir model), each large initializer becomes an
external-data reference, and its value an array onnxruntime takes in place
(``open_session(..., external_weights=...)``) before it optimizes the graph: the same numbers.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .weights_by_reference import LOCATION, MIN_BYTES

# Element types onnxruntime takes straight from a numpy array.
_BY_REFERENCE = frozenset({onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE,
                           onnx.TensorProto.INT8, onnx.TensorProto.INT16, onnx.TensorProto.INT32,
                           onnx.TensorProto.INT64, onnx.TensorProto.UINT8, onnx.TensorProto.UINT16,
                           onnx.TensorProto.UINT32, onnx.TensorProto.UINT64, onnx.TensorProto.BOOL})


def by_reference(tensors: Iterable[onnx.TensorProto]) -> tuple[list[onnx.TensorProto], dict[str, np.ndarray]]:
    """(the initializers to write: small ones as they are, large ones as references; the values of
    the references). Give only initializers some node reads: onnxruntime drops an unread one while
    it loads the graph, and then refuses a reference to it."""
    written, weights = [], {}
    for tensor in tensors:
        if (tensor.data_location == onnx.TensorProto.EXTERNAL or tensor.data_type not in _BY_REFERENCE
                or _bytes(tensor) < MIN_BYTES):
            written.append(tensor)
            continue
        array = np.ascontiguousarray(numpy_helper.to_array(tensor))
        reference = onnx.TensorProto(name=tensor.name, data_type=tensor.data_type, dims=tensor.dims,
                                     data_location=onnx.TensorProto.EXTERNAL)
        for key, value in (("location", LOCATION), ("offset", "0"), ("length", str(array.nbytes))):
            reference.external_data.add(key=key, value=value)
        written.append(reference)
        weights[tensor.name] = array
    return written, weights


def _bytes(tensor: onnx.TensorProto) -> int:
    return int(np.prod(tensor.dims, dtype=np.int64)) * helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize


def without_weights(proto: onnx.ModelProto) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """A copy of ``proto`` whose large initializers are references (``by_reference``), made without
    copying them, and their values; an initializer no node reads is left out."""
    from .gated_segments import node_reads

    light = onnx.ModelProto()
    _copy_fields(proto, light, skip={"graph"})
    _copy_fields(proto.graph, light.graph, skip={"initializer"})
    read = {name for node in proto.graph.node for name in node_reads(node)}
    read |= {value.name for value in [*proto.graph.input, *proto.graph.output]}
    written, weights = by_reference(t for t in proto.graph.initializer if t.name in read)
    light.graph.initializer.extend(written)
    return light, weights


def _copy_fields(source, target, skip: set[str]) -> None:
    for descriptor, value in source.ListFields():
        if descriptor.name in skip:
            continue
        if hasattr(value, "CopyFrom"):  # a message
            getattr(target, descriptor.name).CopyFrom(value)
        elif not isinstance(value, (str, bytes)) and hasattr(value, "__len__"):  # a repeated field
            getattr(target, descriptor.name).extend(value)
        else:
            setattr(target, descriptor.name, value)
