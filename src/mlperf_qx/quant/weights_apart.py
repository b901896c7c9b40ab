"""Models whose weights travel beside them: one copy of the weights per model, handed to each
onnxruntime session by reference, instead of serialized through protobuf for every session (the
layer check and the held-out check open five sessions of a model quantize just wrote), and
sessions built side by side."""

from __future__ import annotations

import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import numpy as np
import onnx
import onnxruntime as ort

from ..runtime import open_session

T = TypeVar("T")

# Weights that go to onnxruntime by reference (see weights_apart): float and int8 data, never int64,
# which may be a Reshape's shape that shape inference reads.
WEIGHT_TYPES = frozenset({onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE,
                          onnx.TensorProto.INT8, onnx.TensorProto.UINT8, onnx.TensorProto.INT32})


def weights_apart(proto: onnx.ModelProto) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """A copy of ``proto`` whose large weights (main-graph initializers a node reads) are external-data
    references, and their values; initializers nothing reads are left out (onnxruntime drops them).
    ``open_apart`` opens it (or a copy with more outputs, or with inputs rewired) as onnxruntime
    opens ``proto``, without serializing the weights for each session (0.1-0.3 s per session of a
    90 MB model), and shape inference reads it in milliseconds instead of copying the weights
    twice. ``proto`` is left unchanged; its weights are copied once, into the arrays."""
    from .weights_by_reference import LOCATION, MIN_BYTES

    skeleton = _copy_fields(proto, onnx.ModelProto(), skip="graph")
    _copy_fields(proto.graph, skeleton.graph, skip="initializer")
    read, inputs = _names_read(proto.graph), {i.name for i in proto.graph.input}
    weights: dict[str, np.ndarray] = {}
    for tensor in proto.graph.initializer:
        if tensor.name not in read and tensor.name not in inputs:
            continue  # onnxruntime drops it on load (equalization leaves replaced weights unread)
        dtype = _weight_dtype(tensor)
        if dtype is None or tensor.name in inputs or math.prod(tensor.dims) * dtype.itemsize < MIN_BYTES:
            skeleton.graph.initializer.append(tensor)
            continue
        weights[tensor.name] = np.frombuffer(tensor.raw_data, dtype).reshape(tuple(tensor.dims))
        reference = _copy_fields(tensor, skeleton.graph.initializer.add(), skip="raw_data")
        reference.data_location = onnx.TensorProto.EXTERNAL
        for key, value in (("location", LOCATION), ("offset", "0"), ("length", str(weights[tensor.name].nbytes))):
            reference.external_data.add(key=key, value=value)
    return skeleton, weights


def _weight_dtype(tensor: onnx.TensorProto) -> np.dtype | None:
    """The numpy type of a weight stored in the proto's raw bytes, else None (stays inline)."""
    if tensor.data_type not in WEIGHT_TYPES or not tensor.HasField("raw_data"):
        return None
    return onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).newbyteorder("<")


def _copy_fields(source, target, skip: str):
    """``target`` with every field of ``source`` but ``skip`` (whatever fields the onnx version has)."""
    for field in source.DESCRIPTOR.fields:  # not ListFields: it would read (copy) the skipped bytes too
        if field.name == skip or (not field.is_repeated and not source.HasField(field.name)):
            continue
        value = getattr(source, field.name)
        if field.is_repeated:
            getattr(target, field.name).extend(value)
        elif field.message_type is not None:
            getattr(target, field.name).CopyFrom(value)
        else:
            setattr(target, field.name, value)
    return target


def _names_read(graph: onnx.GraphProto) -> set[str]:
    """Every value a node of ``graph`` or of its subgraphs reads, and the graph's outputs
    (onnxruntime drops an initializer nothing reads, then refuses a reference to it)."""
    read = {o.name for o in graph.output}
    for node in graph.node:
        read.update(node.input)
        for attribute in node.attribute:
            for subgraph in (*([attribute.g] if attribute.HasField("g") else []), *attribute.graphs):
                read |= _names_read(subgraph)
    return read


def open_apart(skeleton: onnx.ModelProto, weights: dict[str, np.ndarray], optimization=None,
               optimized_model_path: Path | None = None) -> ort.InferenceSession:
    """A session of a model from ``weights_apart`` (or a copy of it): its weights handed over in place."""
    session = open_session(skeleton, optimization, optimized_model_path=optimized_model_path, external_weights=weights)
    session.qx_weights = weights  # onnxruntime may read the arrays in place: they live as long as the session
    return session


def load_apart(path: Path) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """A written model read once, for several sessions (``open_apart``) without reading it again."""
    return weights_apart(onnx.load(str(path)))


def together(*calls: Callable[[], T]) -> list[T]:
    """The calls' results, the calls made side by side: onnxruntime releases the GIL while it builds
    a session, so on two cores or more the sessions a check needs are built at once (each session
    is independent: the same sessions, the same answers)."""
    if len(calls) < 2:
        return [call() for call in calls]
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        futures = [pool.submit(call) for call in calls]
        return [future.result() for future in futures]
