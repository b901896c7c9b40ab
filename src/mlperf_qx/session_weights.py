"""A model proto's large weights handed to onnxruntime by reference instead of through protobuf.

A session built from a proto in memory would serialize every weight to bytes, and onnxruntime
would parse them back and copy them again: for the 90 MB MiniLM encoder about 0.45 s to serialize
and 0.3 s more to open than by reference (measured here), and qx opens a dozen sessions on the
same weights in one quantize run. Instead each large initializer becomes an external-data
reference in a weightless copy of the proto, and its bytes go to onnxruntime as an OrtValue
(``SessionOptions.add_external_initializers``). onnxruntime puts the values in place while it
builds the graph, before it infers shapes or optimizes, so the session computes exactly what the
serialized model computes (tests compare the outputs bit for bit).

An initializer no node (nor subgraph) reads, no graph output names and no graph input overrides
is left out: onnxruntime drops it while it loads the graph anyway (and refuses a reference to it,
"Failed to find existing initializer"). An int8 model still holds the FP32 weights its int8 ones
replaced, unread: 42 of MiniLM's 133 MB, serialized and parsed for nothing before.

An initializer stays inline where a reference would not do:
- small ones (shapes, axes, scales): shape inference on load reads them, and they cost nothing;
- one that is also a graph input (an overridable initializer, as old exporters wrote them);
- data in typed fields, external data, or an element type numpy cannot hold as onnxruntime does.
The caller's proto is only read, never changed.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable

import numpy as np
import onnx

MIN_BYTES = 1024  # smaller initializers (shapes, axes) stay inline: shape inference reads them on load
IN_MEMORY_LOCATION = "qx-weights-in-memory"  # never read: every reference is replaced before the model loads
_NUMPY_TYPES = {
    onnx.TensorProto.FLOAT: np.float32, onnx.TensorProto.FLOAT16: np.float16, onnx.TensorProto.DOUBLE: np.float64,
    onnx.TensorProto.INT8: np.int8, onnx.TensorProto.INT16: np.int16, onnx.TensorProto.INT32: np.int32,
    onnx.TensorProto.INT64: np.int64, onnx.TensorProto.UINT8: np.uint8, onnx.TensorProto.UINT16: np.uint16,
    onnx.TensorProto.UINT32: np.uint32, onnx.TensorProto.UINT64: np.uint64, onnx.TensorProto.BOOL: np.bool_,
}
BY_REFERENCE_TYPES = frozenset(_NUMPY_TYPES)  # element types onnxruntime takes straight from a numpy array


def without_weights(model: onnx.ModelProto, *, copy: bool = False) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """A copy of ``model`` without its unread initializers, whose large main-graph initializers are
    references, and their values (read-only arrays over the proto's bytes). Returns ``model``
    itself and no weights when there is nothing to leave out or lift, unless ``copy`` (for a
    caller that edits the result)."""
    graph = model.graph
    unread, lifted = _plan(graph)
    if not lifted and not unread and not copy:
        return model, {}
    light = onnx.ModelProto()
    _copy_fields(model, light, skip="graph")
    _copy_fields(graph, light.graph, skip="initializer")
    weights: dict[str, np.ndarray] = {}
    for tensor in graph.initializer:
        if tensor.name in unread:
            continue
        values = _values(tensor) if tensor.name in lifted else None
        if values is None:
            light.graph.initializer.add().CopyFrom(tensor)
        else:
            _reference(tensor, values, light.graph.initializer.add())
            weights[tensor.name] = values
    return light, weights


def _plan(graph: onnx.GraphProto) -> tuple[set[str], set[str]]:
    """The initializers onnxruntime would drop, and those to hand over by reference."""
    read = _names_read(graph) | {value.name for value in graph.output}
    overridable = {value.name for value in graph.input}
    unread = {t.name for t in graph.initializer if t.name not in read and t.name not in overridable}
    if sys.byteorder != "little":  # raw_data is little-endian; numpy would read it in native order
        return unread, set()
    lifted = {t.name for t in graph.initializer if _liftable(t) and t.name in read and t.name not in overridable}
    return unread, lifted


def tensors_by_reference(tensors: Iterable[onnx.TensorProto]) -> tuple[list[onnx.TensorProto], dict[str, np.ndarray]]:
    """For a graph built in memory: (its initializers, the large ones as references; their values).
    Give only initializers some node reads, none a graph input overrides (see the module docstring)."""
    written, weights = [], {}
    for tensor in tensors:
        values = _values(tensor) if sys.byteorder == "little" and _liftable(tensor) else None
        if values is None:
            written.append(tensor)
            continue
        reference = onnx.TensorProto()
        _reference(tensor, values, reference)
        written.append(reference)
        weights[tensor.name] = values
    return written, weights


def _liftable(tensor: onnx.TensorProto) -> bool:
    return (tensor.data_type in _NUMPY_TYPES and tensor.HasField("raw_data")
            and tensor.data_location != onnx.TensorProto.EXTERNAL and _declared_bytes(tensor) >= MIN_BYTES)


def _declared_bytes(tensor: onnx.TensorProto) -> int:
    # From the dims, not len(raw_data): upb copies a bytes field on every read (and ByteSize()
    # serializes the message), which for large weights costs more than the saving.
    return math.prod(tensor.dims) * np.dtype(_NUMPY_TYPES[tensor.data_type]).itemsize


def payload_bytes(model: onnx.ModelProto) -> int:
    """The bytes of the model's initializers, without copying them out of protobuf (ByteSize()
    itself fails past 2 GB)."""
    return sum(_declared_bytes(t) if t.data_type in _NUMPY_TYPES and t.HasField("raw_data")
               else len(t.raw_data) or 4 * len(t.float_data) for t in model.graph.initializer)


def _names_read(graph: onnx.GraphProto) -> set[str]:
    """Every value name a node reads, in this graph and in every subgraph (a subgraph may read an
    outer initializer)."""
    names: set[str] = set()
    for node in graph.node:
        names.update(node.input)
        for attribute in node.attribute:
            for subgraph in (*([attribute.g] if attribute.HasField("g") else []), *attribute.graphs):
                names |= _names_read(subgraph)
    return names


def _values(tensor: onnx.TensorProto) -> np.ndarray | None:
    """The tensor's values, read-only over one copy of its bytes; None for a tensor whose bytes
    do not match its dims (it stays inline, for onnxruntime's own error)."""
    raw = tensor.raw_data
    if len(raw) != _declared_bytes(tensor):
        return None
    return np.frombuffer(raw, _NUMPY_TYPES[tensor.data_type]).reshape(tuple(tensor.dims))


def _reference(tensor: onnx.TensorProto, values: np.ndarray, reference: onnx.TensorProto) -> None:
    reference.name, reference.data_type = tensor.name, tensor.data_type
    reference.dims.extend(tensor.dims)
    reference.data_location = onnx.TensorProto.EXTERNAL
    for key, value in (("location", IN_MEMORY_LOCATION), ("offset", "0"), ("length", str(values.nbytes))):
        entry = reference.external_data.add()
        entry.key, entry.value = key, value


def _copy_fields(source, target, skip: str) -> None:
    """Every set field of ``source`` into ``target`` but ``skip`` (messages and lists copied)."""
    for field, value in source.ListFields():
        if field.name == skip:
            continue
        if field.is_repeated:
            getattr(target, field.name).extend(value)
        elif field.type == field.TYPE_MESSAGE:
            getattr(target, field.name).CopyFrom(value)
        else:
            setattr(target, field.name, value)
