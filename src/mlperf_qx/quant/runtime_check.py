"""What onnxruntime makes of a quantized model: which int8 kernels it fused, and how close the
int8 outputs (and every quantized tensor) stay to FP32."""

from __future__ import annotations

import math
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from ..runtime import open_session
from .op_specs import ORT_INT8_KERNELS as INT8_KERNELS


@dataclass
class FusionReport:
    int8_kernels: dict[str, int]
    fused_nodes: list[str]
    remaining_float_compute: dict[str, int]
    session: str = ""  # the session.x64quantprecision decision and why (runtime.Int8Precision)
    flops: object | None = None  # fused_flops.FlopCount of the optimized graph on the first check sample


def check_int8_model(model_path: Path, feeds: list[dict[str, np.ndarray]], names: list[str]
                     ) -> tuple[FusionReport, dict[str, np.ndarray]]:
    """One onnxruntime session for both checks of a fresh int8 model: what it fused (the graph
    optimized at the EXTENDED level: portable, no hardware-specific layouts) and the named outputs
    on each feed, concatenated along axis 0."""
    with tempfile.TemporaryDirectory() as folder:
        optimized = Path(folder) / "optimized.onnx"
        session = open_session(model_path, ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED, optimized_model_path=optimized)
        graph = onnx.load(str(optimized), load_external_data=False).graph
        flops = _fused_flops(optimized, feeds)
    kernels = Counter(n.op_type for n in graph.node if n.op_type in INT8_KERNELS)
    fused = sorted(n.name for n in graph.node if n.op_type in INT8_KERNELS)
    float_compute = Counter(n.op_type for n in graph.node if n.op_type in {"Conv", "MatMul", "Gemm", "FusedConv", "FusedGemm"})
    report = FusionReport(dict(sorted(kernels.items())), fused, dict(sorted(float_compute.items())),
                          session.qx_int8_precision.describe(), flops)
    results = [session.run(names, feed) for feed in feeds]
    outputs = {name: np.concatenate([np.atleast_1d(r[i]) for r in results]) for i, name in enumerate(names)} if results else {}
    return report, outputs


def _fused_flops(optimized: Path, feeds: list[dict[str, np.ndarray]]):
    """What the optimized graph runs in int8, by multiply-adds (see fused_flops); None without a
    sample, or when the optimized graph cannot be run on its own (a diagnostic: never fatal)."""
    from .fused_flops import count_flops

    if not feeds:
        return None
    try:
        return count_flops(onnx.load(str(optimized)), feeds[0])
    except Exception:
        return None


def sqnr_db(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio in dB (inf when identical)."""
    reference = reference.astype(np.float64)
    noise = np.sum((reference - candidate.astype(np.float64)) ** 2)
    signal = np.sum(reference ** 2)
    if noise == 0:
        return float("inf")
    if signal == 0:
        return float("-inf")
    return float(10 * np.log10(signal / noise))


def cosine(reference: np.ndarray, candidate: np.ndarray) -> float:
    a, b = reference.astype(np.float64).ravel(), candidate.astype(np.float64).ravel()
    denominator = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / denominator) if denominator else 1.0


def expose_tensors(graph: onnx.GraphProto, names: list[str]) -> None:
    """Make each named intermediate tensor a graph output too (with its element type), so a
    session returns it."""
    present = {o.name for o in graph.output}
    types = {v.name: v.type.tensor_type.elem_type for v in (*graph.value_info, *graph.input, *graph.output)}
    for node in graph.node:  # Q outputs are int8 even where no value_info says so
        if node.op_type == "QuantizeLinear" or node.op_type.startswith("QLinear"):
            types.setdefault(node.output[0], onnx.TensorProto.INT8)
    for name in names:
        if name not in present:
            graph.output.append(onnx.helper.make_tensor_value_info(name, types.get(name) or onnx.TensorProto.FLOAT, None))


def with_outputs(proto: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    """A copy of ``proto`` whose graph also outputs the named tensors."""
    augmented = onnx.ModelProto()
    augmented.CopyFrom(proto)
    expose_tensors(augmented.graph, names)
    return augmented


# Weights that go to onnxruntime by reference (see weights_apart): float and int8 data, never int64,
# which may be a Reshape's shape that shape inference reads.
WEIGHT_TYPES = frozenset({onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE,
                          onnx.TensorProto.INT8, onnx.TensorProto.UINT8, onnx.TensorProto.INT32})


def weights_apart(proto: onnx.ModelProto) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """A copy of ``proto`` whose large weights (main-graph initializers a node reads) are external-data
    references, and their values. ``open_apart`` opens it (or a copy with more outputs, or with inputs
    rewired) as onnxruntime would open ``proto``, without serializing the weights through protobuf
    for each session (0.1-0.3 s per session of a 90 MB model), and shape inference reads it in
    milliseconds instead of copying the weights twice. ``proto`` is left unchanged; the weights are
    copied once, into the arrays."""
    from .weights_by_reference import LOCATION, MIN_BYTES

    skeleton = _copy_fields(proto, onnx.ModelProto(), skip="graph")
    _copy_fields(proto.graph, skeleton.graph, skip="initializer")
    read = _names_read(proto.graph) - {i.name for i in proto.graph.input}  # an overridable initializer stays inline
    weights: dict[str, np.ndarray] = {}
    for tensor in proto.graph.initializer:
        dtype = _weight_dtype(tensor)
        if dtype is None or tensor.name not in read or math.prod(tensor.dims) * dtype.itemsize < MIN_BYTES:
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


def open_apart(skeleton: onnx.ModelProto, weights: dict[str, np.ndarray]) -> ort.InferenceSession:
    """A session of a model from ``weights_apart`` (or a copy of it): its weights handed over in place."""
    session = open_session(skeleton, external_weights=weights)
    session.qx_weights = weights  # onnxruntime may read the arrays in place: they live as long as the session
    return session


def run_with_tensors(proto: onnx.ModelProto, feeds: list[dict[str, np.ndarray]], names: list[str]) -> dict[str, np.ndarray]:
    """Run ``proto`` on each feed; the named tensors (added as outputs when needed), concatenated
    over the feeds along axis 0."""
    session = open_session(with_outputs(proto, names))
    results = [session.run(names, feed) for feed in feeds]
    return {name: np.concatenate([np.atleast_1d(r[i]) for r in results]) for i, name in enumerate(names)}
